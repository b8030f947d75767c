//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554).
//!
//! Describe answers from this broker's copy of the metadata (as a Kafka broker answers from
//! its metadata cache). Alter turns each salted password into the stored and server keys here,
//! so no password and no salted password goes further, sends the change to the coordinators,
//! and waits until this broker's view holds it: a client that alters and then logs in through
//! this broker finds its credential.

use super::admin::{ADMIN_TIMEOUT, Refusal, admin, refusal};
use super::{Ctx, allowed_on_cluster, str_bytes};
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use std::collections::{BTreeMap, BTreeSet};
use weir_model::ScramMechanism;
use weir_model::acl::Operation;
use weir_model::limits::{SCRAM_ALTERATIONS_MAX, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};
use weir_proto::v1;

fn describe_result(user: &str, refusal: Option<Refusal>) -> DescribeUserScramCredentialsResult {
    let mut r = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
    if let Some((code, message)) = refusal {
        r.error_code = code.code();
        r.error_message = Some(str_bytes(message));
    }
    r
}

pub async fn describe_user_scram_credentials(
    state: &BrokerState,
    ctx: &Ctx,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !allowed_on_cluster(state, ctx, Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("DESCRIBE on the cluster is needed")));
    }
    let view = state.view();
    let names: Vec<String> = match req.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.to_string()).collect(),
        // None or empty: every user with a credential.
        _ => view.users.keys().cloned().collect(),
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &names {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(names.len());
    for (name, n) in counts {
        if n > 1 {
            let why = format!("user '{name}' is named more than once");
            results.push(describe_result(
                name,
                Some((ResponseError::DuplicateResource, why)),
            ));
            continue;
        }
        let Some(creds) = view.users.get(name).filter(|c| !c.is_empty()) else {
            let why = format!("user '{name}' has no SCRAM credential");
            results.push(describe_result(
                name,
                Some((ResponseError::ResourceNotFound, why)),
            ));
            continue;
        };
        let mut r = describe_result(name, None);
        r.credential_infos = creds
            .iter()
            .map(|(m, c)| {
                CredentialInfo::default()
                    .with_mechanism(m.kafka_type())
                    .with_iterations(i32::try_from(c.iterations).unwrap_or(i32::MAX))
            })
            .collect();
        results.push(r);
    }
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// An upsertion as the coordinators take it, or why this user's change is refused here.
fn upsertion(
    u: &alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<v1::ScramUpsertion, Refusal> {
    let m = ScramMechanism::from_kafka_type(u.mechanism).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            format!(
                "SCRAM mechanism {} is not known; 1 is SCRAM-SHA-256, 2 SCRAM-SHA-512",
                u.mechanism
            ),
        )
    })?;
    let unacceptable = |why: String| Err((ResponseError::UnacceptableCredential, why));
    let iterations = u32::try_from(u.iterations).unwrap_or(0);
    if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
        return unacceptable(format!(
            "{} iterations; allowed are {SCRAM_ITERATIONS_MIN} to {SCRAM_ITERATIONS_MAX}",
            u.iterations
        ));
    }
    if u.salted_password.len() != m.hash_len() {
        return unacceptable(format!(
            "a {m} salted password is {} bytes, not {}",
            m.hash_len(),
            u.salted_password.len()
        ));
    }
    let c = weir_auth::scram::credential_from_salted(
        m,
        &u.salted_password,
        u.salt.to_vec(),
        iterations,
    );
    Ok(v1::ScramUpsertion {
        user: u.name.to_string(),
        credential: Some(weir_proto::convert::scram_credential(m, &c)),
    })
}

fn alter_result(user: &str, refusal: Option<Refusal>) -> AlterUserScramCredentialsResult {
    let mut r = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
    if let Some((code, message)) = refusal {
        r.error_code = code.code();
        r.error_message = Some(str_bytes(message));
    }
    r
}

pub async fn alter_user_scram_credentials(
    state: &BrokerState,
    ctx: &Ctx,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let users: BTreeSet<String> = req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    let respond = |results| AlterUserScramCredentialsResponse::default().with_results(results);
    let refuse_all = |r: Refusal| {
        let all = users
            .iter()
            .map(|u| alter_result(u, Some(r.clone())))
            .collect();
        respond(all)
    };
    if !allowed_on_cluster(state, ctx, Operation::Alter) {
        let why = "ALTER on the cluster is needed".to_string();
        return refuse_all((ResponseError::ClusterAuthorizationFailed, why));
    }
    if req.deletions.len() + req.upsertions.len() > SCRAM_ALTERATIONS_MAX {
        let why = format!("at most {SCRAM_ALTERATIONS_MAX} credential changes in one request");
        return refuse_all((ResponseError::PolicyViolation, why));
    }
    let mut refused: BTreeMap<String, Refusal> = BTreeMap::new();
    let mut request = v1::AlterScramCredentialsRequest::default();
    for u in &req.upsertions {
        match upsertion(u) {
            Ok(up) => request.upsertions.push(up),
            Err(r) => {
                refused.entry(u.name.to_string()).or_insert(r);
            }
        }
    }
    for d in &req.deletions {
        match ScramMechanism::from_kafka_type(d.mechanism) {
            Some(m) => request.deletions.push(v1::ScramDeletion {
                user: d.name.to_string(),
                mechanism: i32::from(m.kafka_type()),
            }),
            None => {
                let why = format!("SCRAM mechanism {} is not known", d.mechanism);
                refused
                    .entry(d.name.to_string())
                    .or_insert((ResponseError::UnsupportedSaslMechanism, why));
            }
        }
    }
    // A user refused here sends none of its changes: all of a user's changes or none.
    request
        .upsertions
        .retain(|u| !refused.contains_key(&u.user));
    request.deletions.retain(|d| !refused.contains_key(&d.user));
    let outcome = send(state, request).await;
    let results = users
        .iter()
        .map(|u| {
            let r = refused
                .remove(u)
                .or_else(|| outcome.as_ref().err().cloned())
                .or_else(|| {
                    outcome
                        .as_ref()
                        .ok()
                        .and_then(|o| o.get(u).cloned().flatten())
                });
            alter_result(u, r)
        })
        .collect();
    respond(results)
}

/// Sends the changes to the coordinators and waits for this broker's view to hold them; each
/// user's refusal, if it had one.
async fn send(
    state: &BrokerState,
    request: v1::AlterScramCredentialsRequest,
) -> Result<BTreeMap<String, Option<Refusal>>, Refusal> {
    if request.upsertions.is_empty() && request.deletions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let resp = admin(state, |mut c| {
        let req = request.clone();
        async move { c.alter_scram_credentials(req).await }
    })
    .await?;
    refusal(resp.error)?;
    let version = resp.version;
    if !state
        .wait_for_view(ADMIN_TIMEOUT, |v| v.version >= version)
        .await
    {
        return Err((
            ResponseError::RequestTimedOut,
            "the credentials changed but this broker has not seen it yet; retry".to_string(),
        ));
    }
    Ok(resp
        .results
        .into_iter()
        .map(|r| (r.user, refusal(r.error).err()))
        .collect())
}
