//! CreateAcls, DescribeAcls and DeleteAcls (KIP-140), with Kafka's numbers. Creating and
//! deleting take ALTER on the cluster, describing DESCRIBE on it. Changes go to the
//! coordinators; the broker waits until its own view holds them, so an ACL a client made is
//! in force on this broker when the answer comes.

use super::admin::{ADMIN_TIMEOUT, Refusal, admin, refusal};
use super::{Ctx, allowed_on_cluster, str_bytes};
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use weir_model::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use weir_model::limits::ACL_CHANGES_MAX;
use weir_proto::convert::pattern_filter_from;
use weir_proto::v1;

fn denied(op: Operation) -> Refusal {
    (
        ResponseError::ClusterAuthorizationFailed,
        format!("{op} on the cluster is needed"),
    )
}

/// An ACL from CreateAcls' numbers, or what is wrong with it.
fn binding(c: &create_acls_request::AclCreation) -> Result<AclBinding, String> {
    let unknown = |what: &str, n: i8| format!("{what} {n} is not one an ACL can have");
    let a = AclBinding {
        resource_type: ResourceType::from_code(c.resource_type)
            .ok_or_else(|| unknown("resource type", c.resource_type))?,
        resource_name: c.resource_name.to_string(),
        pattern: PatternType::from_code(c.resource_pattern_type)
            .ok_or_else(|| unknown("pattern type", c.resource_pattern_type))?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation)
            .ok_or_else(|| unknown("operation", c.operation))?,
        permission: Permission::from_code(c.permission_type)
            .ok_or_else(|| unknown("permission", c.permission_type))?,
    };
    a.check()?;
    Ok(a)
}

/// A filter from DescribeAcls' or DeleteAcls' numbers (1 is ANY); `None` if a number is
/// unknown.
fn filter(
    rt: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    op: i8,
    permission: i8,
) -> Option<AclFilter> {
    fn any<T>(n: i8, from: fn(i8) -> Option<T>) -> Option<Option<T>> {
        if n == 1 {
            Some(None)
        } else {
            from(n).map(Some)
        }
    }
    Some(AclFilter {
        resource_type: any(rt, ResourceType::from_code)?,
        resource_name: name.map(|s| s.to_string()),
        pattern: pattern_filter_from(pattern)?,
        principal: principal.map(|s| s.to_string()),
        host: host.map(|s| s.to_string()),
        operation: any(op, Operation::from_code)?,
        permission: any(permission, Permission::from_code)?,
    })
}

fn result(r: Result<(), Refusal>) -> AclCreationResult {
    match r {
        Ok(()) => AclCreationResult::default(),
        Err((code, msg)) => AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(msg))),
    }
}

pub async fn create_acls(
    state: &BrokerState,
    ctx: &Ctx,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let n = req.creations.len();
    let refuse_all = |r: Refusal| {
        CreateAclsResponse::default().with_results((0..n).map(|_| result(Err(r.clone()))).collect())
    };
    if !allowed_on_cluster(state, ctx, Operation::Alter) {
        return refuse_all(denied(Operation::Alter));
    }
    if n > ACL_CHANGES_MAX {
        return refuse_all((
            ResponseError::InvalidRequest,
            format!("at most {ACL_CHANGES_MAX} ACLs in one request"),
        ));
    }
    let mut results: Vec<Option<Result<(), Refusal>>> = Vec::with_capacity(n);
    let mut valid = Vec::new();
    for c in &req.creations {
        match binding(c) {
            Ok(a) => {
                valid.push(weir_proto::convert::acl(&a));
                results.push(None);
            }
            Err(why) => results.push(Some(Err((ResponseError::InvalidRequest, why)))),
        }
    }
    let sent = send_create(state, valid).await;
    let mut answers = match &sent {
        Ok(r) => r.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = results
        .into_iter()
        .map(|r| match (r, &sent) {
            (Some(r), _) => result(r),
            (None, Err(e)) => result(Err(e.clone())),
            (None, Ok(_)) => result(answers.next().unwrap_or(Ok(()))),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// Sends valid ACLs to the coordinators and waits for this broker to see them; each one's
/// result in order.
async fn send_create(
    state: &BrokerState,
    acls: Vec<v1::Acl>,
) -> Result<Vec<Result<(), Refusal>>, Refusal> {
    if acls.is_empty() {
        return Ok(Vec::new());
    }
    let req = v1::CreateAclsRequest { acls };
    let resp = admin(state, |mut c| {
        let req = req.clone();
        async move { c.create_acls(req).await }
    })
    .await?;
    refusal(resp.error)?;
    wait_for(state, resp.version).await?;
    Ok(resp.results.into_iter().map(|e| refusal(Some(e))).collect())
}

async fn wait_for(state: &BrokerState, version: i64) -> Result<(), Refusal> {
    if state
        .wait_for_view(ADMIN_TIMEOUT, |v| v.version >= version)
        .await
    {
        Ok(())
    } else {
        Err((
            ResponseError::RequestTimedOut,
            "the ACLs changed but this broker has not seen it yet; retry".to_string(),
        ))
    }
}

pub async fn describe_acls(
    state: &BrokerState,
    ctx: &Ctx,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let refuse = |(code, msg): Refusal| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(msg)))
    };
    if !allowed_on_cluster(state, ctx, Operation::Describe) {
        return refuse(denied(Operation::Describe));
    }
    let Some(f) = filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) else {
        return refuse((
            ResponseError::InvalidRequest,
            "a filter field holds a number no ACL has".into(),
        ));
    };
    let view = state.view();
    let mut resources: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for a in view.acls.iter().filter(|a| f.matches(a)) {
        resources
            .entry((a.resource_type, a.resource_name.as_str(), a.pattern))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(a.principal.clone()))
                    .with_host(str_bytes(a.host.clone()))
                    .with_operation(a.operation.code())
                    .with_permission_type(a.permission.code()),
            );
    }
    let resources = resources
        .into_iter()
        .map(|((rt, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

fn matching(a: &v1::Acl) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(a.resource_type as i8)
        .with_resource_name(str_bytes(a.resource_name.clone()))
        .with_pattern_type(a.pattern_type as i8)
        .with_principal(str_bytes(a.principal.clone()))
        .with_host(str_bytes(a.host.clone()))
        .with_operation(a.operation as i8)
        .with_permission_type(a.permission as i8)
}

pub async fn delete_acls(
    state: &BrokerState,
    ctx: &Ctx,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let n = req.filters.len();
    let refuse_all = |(code, msg): Refusal| {
        let one = DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(msg)));
        DeleteAclsResponse::default().with_filter_results(vec![one; n])
    };
    if !allowed_on_cluster(state, ctx, Operation::Alter) {
        return refuse_all(denied(Operation::Alter));
    }
    if n > ACL_CHANGES_MAX {
        return refuse_all((
            ResponseError::InvalidRequest,
            format!("at most {ACL_CHANGES_MAX} filters in one request"),
        ));
    }
    let mut filters = Vec::with_capacity(n);
    for f in &req.filters {
        let Some(f) = filter(
            f.resource_type_filter,
            f.resource_name_filter.as_ref(),
            f.pattern_type_filter,
            f.principal_filter.as_ref(),
            f.host_filter.as_ref(),
            f.operation,
            f.permission_type,
        ) else {
            return refuse_all((
                ResponseError::InvalidRequest,
                "a filter field holds a number no ACL has".into(),
            ));
        };
        filters.push(weir_proto::convert::acl_filter(&f));
    }
    let req = v1::DeleteAclsRequest { filters };
    let sent = async {
        let resp = admin(state, |mut c| {
            let req = req.clone();
            async move { c.delete_acls(req).await }
        })
        .await?;
        refusal(resp.error)?;
        wait_for(state, resp.version).await?;
        Ok::<_, Refusal>(resp.results)
    }
    .await;
    match sent {
        Err(r) => refuse_all(r),
        Ok(results) => DeleteAclsResponse::default().with_filter_results(
            results
                .iter()
                .map(|r| {
                    DeleteAclsFilterResult::default()
                        .with_matching_acls(r.acls.iter().map(matching).collect())
                })
                .collect(),
        ),
    }
}
