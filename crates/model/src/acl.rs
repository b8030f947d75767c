//! Access control lists with Kafka's vocabulary and numbers: who (a principal, from a host)
//! may do what (an operation) to which resources (a type and a literal or prefixed name), and
//! the filters DescribeAcls and DeleteAcls select them with. Deciding with them is
//! `weir_auth::acl`; storing them is the coordinators' metadata.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a Kafka enum with its wire numbers, names, and conversions both ways.
macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal, $text:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Kafka's number for it on the wire.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            pub fn from_code(code: i8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Kafka's name for it (`TOPIC`, `READ`, `ALLOW`).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum!(
    /// What an ACL is about.
    ResourceType {
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
    }
);

kafka_enum!(
    /// How an ACL's resource name matches: the name itself (`*`: every name), or every name
    /// that starts with it.
    PatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

kafka_enum!(
    /// What a principal does to a resource.
    Operation {
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
    }
);

kafka_enum!(
    /// Whether an ACL allows or denies.
    Permission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

/// The cluster resource's one name, as Kafka names it.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The name and principal that match everything in a literal ACL.
pub const WILDCARD: &str = "*";
/// The principal that matches every user.
pub const ANY_USER: &str = "User:*";

/// One ACL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    /// `User:NAME`, or `User:*` for everyone.
    pub principal: String,
    /// A client's IP address, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Whether this ACL's resource pattern covers `name` of type `rt`.
    pub fn covers(&self, rt: ResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    /// What is wrong with it, if anything (Kafka's rules for CreateAcls).
    pub fn check(&self) -> Result<(), String> {
        use crate::limits::ACL_FIELD_BYTES_MAX;
        for (what, v) in [
            ("resource name", &self.resource_name),
            ("principal", &self.principal),
            ("host", &self.host),
        ] {
            if v.is_empty() || v.len() > ACL_FIELD_BYTES_MAX || v.chars().any(char::is_control) {
                return Err(format!(
                    "the {what} has 1 to {ACL_FIELD_BYTES_MAX} bytes and no control characters"
                ));
            }
        }
        if !self.principal.starts_with("User:") || self.principal.len() == "User:".len() {
            return Err(format!(
                "principal {:?}: Weir's principals are User:NAME, or User:* for everyone",
                self.principal
            ));
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        if self.pattern == PatternType::Prefixed && self.resource_name == WILDCARD {
            return Err("a PREFIXED ACL cannot be named *; use a LITERAL one".into());
        }
        Ok(())
    }
}

/// How a filter selects ACLs by pattern (Kafka's ANY, MATCH, LITERAL and PREFIXED).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// Either pattern type, the name exactly.
    Any,
    /// Every ACL that would apply to the named resource: literal with its name or `*`, and
    /// prefixed with a prefix of it.
    Match,
    Exactly(PatternType),
}

/// DescribeAcls' and DeleteAcls' selection; `None` fields match anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        fn eq<T: PartialEq>(want: &Option<T>, have: &T) -> bool {
            want.as_ref().is_none_or(|w| w == have)
        }
        let resource = match (self.pattern, &self.resource_name) {
            (PatternFilter::Match, Some(name)) => match self.resource_type {
                Some(rt) => b.covers(rt, name),
                None => b.covers(b.resource_type, name),
            },
            (PatternFilter::Match, None) => true,
            (PatternFilter::Any, name) => eq(name, &b.resource_name),
            (PatternFilter::Exactly(p), name) => p == b.pattern && eq(name, &b.resource_name),
        };
        resource
            && eq(&self.resource_type, &b.resource_type)
            && eq(&self.principal, &b.principal)
            && eq(&self.host, &b.host)
            && eq(&self.operation, &b.operation)
            && eq(&self.permission, &b.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: ResourceType, name: &str, pattern: PatternType) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn codes_and_names_round_trip() {
        for o in Operation::ALL {
            assert_eq!(Operation::from_code(o.code()), Some(*o));
            assert_eq!(Operation::parse(o.name()), Some(*o));
        }
        assert_eq!(
            ResourceType::from_code(1),
            None,
            "ANY is a filter, not a type"
        );
        assert_eq!(Permission::parse("allow"), Some(Permission::Allow));
    }

    #[test]
    fn patterns_cover_names_as_kafka_does() {
        use PatternType::*;
        use ResourceType::*;
        assert!(acl(Topic, "orders", Literal).covers(Topic, "orders"));
        assert!(!acl(Topic, "orders", Literal).covers(Topic, "orders-eu"));
        assert!(!acl(Topic, "orders", Literal).covers(Group, "orders"));
        assert!(acl(Topic, "*", Literal).covers(Topic, "anything"));
        assert!(acl(Topic, "orders", Prefixed).covers(Topic, "orders-eu"));
        assert!(!acl(Topic, "orders", Prefixed).covers(Topic, "order"));
    }

    #[test]
    fn filters_select_as_describe_and_delete_do() {
        use PatternType::*;
        use ResourceType::*;
        let all = [
            acl(Topic, "orders", Literal),
            acl(Topic, "ord", Prefixed),
            acl(Topic, "*", Literal),
            acl(Group, "orders", Literal),
        ];
        let filter = |pattern, name: Option<&str>| AclFilter {
            resource_type: Some(Topic),
            resource_name: name.map(str::to_string),
            pattern,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        let count = |f: AclFilter| all.iter().filter(|b| f.matches(b)).count();
        assert_eq!(count(filter(PatternFilter::Match, Some("orders"))), 3);
        assert_eq!(count(filter(PatternFilter::Any, Some("orders"))), 1);
        assert_eq!(count(filter(PatternFilter::Exactly(Prefixed), None)), 1);
        assert_eq!(count(filter(PatternFilter::Any, None)), 3);
    }

    #[test]
    fn bad_acls_say_what_is_allowed() {
        let mut a = acl(ResourceType::Cluster, "other", PatternType::Literal);
        assert!(a.check().unwrap_err().contains("kafka-cluster"));
        a.resource_name = CLUSTER_NAME.into();
        a.check().unwrap();
        a.principal = "alice".into();
        assert!(a.check().unwrap_err().contains("User:NAME"));
        let mut p = acl(ResourceType::Topic, "*", PatternType::Prefixed);
        assert!(p.check().unwrap_err().contains("LITERAL"));
        p.resource_name = String::new();
        assert!(p.check().is_err());
    }
}
