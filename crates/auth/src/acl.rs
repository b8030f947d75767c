//! Kafka's authorization rule over a set of ACLs (its `StandardAuthorizer`):
//!
//! 1. a super user may do anything;
//! 2. a DENY that matches the principal, host and operation (or ALL) wins;
//! 3. then an ALLOW that matches does, where READ, WRITE, DELETE and ALTER each imply
//!    DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! 4. a resource no ACL names at all is allowed only when `allow_if_no_acl` is set
//!    (`allow.everyone.if.no.acl.found`).
//!
//! An ACL names a resource when its literal name is the resource's or `*`, or its prefix
//! starts the resource's name; its principal matches when it is the principal or `User:*`, and
//! its host when it is the client's address or `*`.

use std::collections::{BTreeSet, HashSet};
use weir_model::acl::{ANY_USER, AclBinding, Operation, Permission, ResourceType, WILDCARD};

/// The principal of a connection that has not authenticated (PLAINTEXT, SSL without a
/// client certificate), as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Who asks: the principal (`User:NAME`) and the client's IP address.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// The broker's authorization settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorizer {
    /// Principals that may do anything (`super.users`).
    pub super_users: HashSet<String>,
    /// Whether a resource no ACL names is open to everyone (`allow.everyone.if.no.acl.found`).
    pub allow_if_no_acl: bool,
}

fn implies(granted: Operation, asked: Operation) -> bool {
    use Operation::*;
    granted == All
        || granted == asked
        || (asked == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (asked == DescribeConfigs && granted == AlterConfigs)
}

impl Authorizer {
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }

    /// Whether `who` may do `op` to some resource of type `rt` (Kafka's
    /// `authorizeByResourceType`, as an idempotent producer's InitProducerId asks for WRITE on
    /// any topic): a super user, an ALLOW for it, or no ACL for the type at all with
    /// `allow_if_no_acl`. A DENY for some names does not take the others away.
    pub fn allows_any(
        &self,
        acls: &BTreeSet<AclBinding>,
        who: Requester<'_>,
        op: Operation,
        rt: ResourceType,
    ) -> bool {
        if self.is_super_user(who.principal) {
            return true;
        }
        let mut named = false;
        for a in acls.iter().filter(|a| a.resource_type == rt) {
            named = true;
            let applies = (a.principal == who.principal || a.principal == ANY_USER)
                && (a.host == who.host || a.host == WILDCARD);
            if applies && a.permission == Permission::Allow && implies(a.operation, op) {
                return true;
            }
        }
        !named && self.allow_if_no_acl
    }

    /// Whether `who` may do `op` to the resource `rt` named `name`.
    pub fn allows(
        &self,
        acls: &BTreeSet<AclBinding>,
        who: Requester<'_>,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(who.principal) {
            return true;
        }
        let mut named = false;
        let mut allowed = false;
        for a in acls.iter().filter(|a| a.covers(rt, name)) {
            named = true;
            let applies = (a.principal == who.principal || a.principal == ANY_USER)
                && (a.host == who.host || a.host == WILDCARD);
            if !applies {
                continue;
            }
            match a.permission {
                Permission::Deny if a.operation == op || a.operation == Operation::All => {
                    return false;
                }
                Permission::Allow if implies(a.operation, op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!named && self.allow_if_no_acl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::acl::PatternType;

    fn acl(
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        p: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: p,
        }
    }

    const ALICE: Requester<'static> = Requester {
        principal: "User:alice",
        host: "127.0.0.1",
    };
    const BOB: Requester<'static> = Requester {
        principal: "User:bob",
        host: "127.0.0.1",
    };

    fn authorizer(allow_if_no_acl: bool) -> Authorizer {
        Authorizer {
            super_users: HashSet::from(["User:admin".to_string()]),
            allow_if_no_acl,
        }
    }

    #[test]
    fn deny_wins_over_allow_and_implications_hold() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        let acls = BTreeSet::from([
            acl("orders", Literal, "User:alice", Write, Allow),
            acl("orders", Literal, "User:*", Read, Allow),
            acl("orders", Literal, "User:bob", All, Deny),
        ]);
        let a = authorizer(false);
        let t = ResourceType::Topic;
        assert!(a.allows(&acls, ALICE, Write, t, "orders"));
        assert!(
            a.allows(&acls, ALICE, Describe, t, "orders"),
            "WRITE implies DESCRIBE"
        );
        assert!(!a.allows(&acls, ALICE, Delete, t, "orders"));
        assert!(
            !a.allows(&acls, BOB, Read, t, "orders"),
            "DENY ALL wins over User:* READ"
        );
        let admin = Requester {
            principal: "User:admin",
            host: "10.0.0.9",
        };
        assert!(a.allows(&acls, admin, Delete, t, "orders"), "super user");
    }

    #[test]
    fn prefixes_hosts_and_the_no_acl_default() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        let mut only_there = acl("eu-", Prefixed, "User:alice", Read, Allow);
        only_there.host = "10.0.0.1".into();
        let acls = BTreeSet::from([acl("eu-", Prefixed, "User:bob", Read, Allow), only_there]);
        let t = ResourceType::Topic;
        for open in [false, true] {
            let a = authorizer(open);
            assert!(a.allows(&acls, BOB, Read, t, "eu-orders"));
            assert!(
                !a.allows(&acls, ALICE, Read, t, "eu-orders"),
                "alice only from 10.0.0.1"
            );
            let there = Requester {
                principal: "User:alice",
                host: "10.0.0.1",
            };
            assert!(a.allows(&acls, there, Read, t, "eu-orders"));
            assert_eq!(
                a.allows(&acls, ALICE, Read, t, "us-orders"),
                open,
                "no ACL names it"
            );
            assert!(
                !a.allows(&acls, BOB, Write, t, "eu-orders"),
                "named, but not for WRITE"
            );
        }
        let configs = BTreeSet::from([acl("t", Literal, "User:alice", AlterConfigs, Allow)]);
        assert!(authorizer(false).allows(&configs, ALICE, DescribeConfigs, t, "t"));
        let describe_denied = BTreeSet::from([
            acl("t", Literal, "User:alice", Read, Allow),
            acl("t", Literal, "User:alice", Describe, Deny),
        ]);
        assert!(
            authorizer(false).allows(&describe_denied, ALICE, Read, t, "t"),
            "DENY DESCRIBE leaves READ"
        );
        assert!(!authorizer(false).allows(&describe_denied, ALICE, Describe, t, "t"));
    }
}
