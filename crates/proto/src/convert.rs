//! Weir's model types to and from their messages, for those both coordinators and their
//! clients read: SCRAM credentials and ACLs. A message that does not convert (a number no
//! Kafka enum has) is `None`: callers refuse it or skip it with a warning.

use crate::v1;
use weir_model::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use weir_model::{ScramCredential, ScramMechanism};

pub fn scram_credential(m: ScramMechanism, c: &ScramCredential) -> v1::ScramCredential {
    v1::ScramCredential {
        mechanism: i32::from(m.kafka_type()),
        salt: c.salt.clone(),
        stored_key: c.stored_key.clone(),
        server_key: c.server_key.clone(),
        iterations: i32::try_from(c.iterations).unwrap_or(i32::MAX),
    }
}

pub fn scram_credential_from(c: &v1::ScramCredential) -> Option<(ScramMechanism, ScramCredential)> {
    let m = ScramMechanism::from_kafka_type(i8::try_from(c.mechanism).ok()?)?;
    let credential = ScramCredential {
        salt: c.salt.clone(),
        stored_key: c.stored_key.clone(),
        server_key: c.server_key.clone(),
        iterations: u32::try_from(c.iterations).ok()?,
    };
    Some((m, credential))
}

fn code(n: i32) -> Option<i8> {
    i8::try_from(n).ok()
}

pub fn acl(a: &AclBinding) -> v1::Acl {
    v1::Acl {
        resource_type: i32::from(a.resource_type.code()),
        resource_name: a.resource_name.clone(),
        pattern_type: i32::from(a.pattern.code()),
        principal: a.principal.clone(),
        host: a.host.clone(),
        operation: i32::from(a.operation.code()),
        permission: i32::from(a.permission.code()),
    }
}

pub fn acl_from(a: &v1::Acl) -> Option<AclBinding> {
    Some(AclBinding {
        resource_type: ResourceType::from_code(code(a.resource_type)?)?,
        resource_name: a.resource_name.clone(),
        pattern: PatternType::from_code(code(a.pattern_type)?)?,
        principal: a.principal.clone(),
        host: a.host.clone(),
        operation: Operation::from_code(code(a.operation)?)?,
        permission: Permission::from_code(code(a.permission)?)?,
    })
}

/// Kafka's pattern filter numbers: 1 ANY, 2 MATCH, else a pattern type.
pub fn pattern_filter_from(n: i8) -> Option<PatternFilter> {
    match n {
        1 => Some(PatternFilter::Any),
        2 => Some(PatternFilter::Match),
        n => PatternType::from_code(n).map(PatternFilter::Exactly),
    }
}

pub fn pattern_filter_code(p: PatternFilter) -> i8 {
    match p {
        PatternFilter::Any => 1,
        PatternFilter::Match => 2,
        PatternFilter::Exactly(t) => t.code(),
    }
}

pub fn acl_filter(f: &AclFilter) -> v1::AclFilter {
    v1::AclFilter {
        resource_type: f.resource_type.map(|t| i32::from(t.code())),
        resource_name: f.resource_name.clone(),
        pattern_type: i32::from(pattern_filter_code(f.pattern)),
        principal: f.principal.clone(),
        host: f.host.clone(),
        operation: f.operation.map(|o| i32::from(o.code())),
        permission: f.permission.map(|p| i32::from(p.code())),
    }
}

pub fn acl_filter_from(f: &v1::AclFilter) -> Option<AclFilter> {
    fn opt<T>(n: Option<i32>, from: fn(i8) -> Option<T>) -> Option<Option<T>> {
        match n {
            None => Some(None),
            Some(n) => from(code(n)?).map(Some),
        }
    }
    Some(AclFilter {
        resource_type: opt(f.resource_type, ResourceType::from_code)?,
        resource_name: f.resource_name.clone(),
        pattern: pattern_filter_from(code(f.pattern_type)?)?,
        principal: f.principal.clone(),
        host: f.host.clone(),
        operation: opt(f.operation, Operation::from_code)?,
        permission: opt(f.permission, Permission::from_code)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_and_filters_round_trip() {
        let a = AclBinding {
            resource_type: ResourceType::Group,
            resource_name: "g".into(),
            pattern: PatternType::Prefixed,
            principal: "User:bob".into(),
            host: "10.0.0.1".into(),
            operation: Operation::Describe,
            permission: Permission::Deny,
        };
        assert_eq!(acl_from(&acl(&a)), Some(a));
        let f = AclFilter {
            resource_type: None,
            resource_name: Some("x".into()),
            pattern: PatternFilter::Match,
            principal: None,
            host: None,
            operation: Some(Operation::Read),
            permission: None,
        };
        assert_eq!(acl_filter_from(&acl_filter(&f)), Some(f));
        let mut bad = acl(&acl_from(&acl(&AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "t".into(),
            pattern: PatternType::Literal,
            principal: "User:a".into(),
            host: "*".into(),
            operation: Operation::All,
            permission: Permission::Allow,
        }))
        .unwrap());
        bad.operation = 99;
        assert_eq!(acl_from(&bad), None);
    }
}
