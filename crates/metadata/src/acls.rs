//! [`Command::CreateAcls`] and [`Command::DeleteAcls`]: the cluster's ACLs, with Kafka's
//! per-item results.

use crate::apply::Outcome;
use crate::state::*;
use weir_model::acl::{AclBinding, AclFilter};
use weir_model::limits::{ACL_CHANGES_MAX, ACLS_MAX};

fn too_many(n: usize) -> Result<(), MetadataError> {
    if n > ACL_CHANGES_MAX {
        return Err(MetadataError::InvalidRequest(format!(
            "{n} ACL changes in one request; at most {ACL_CHANGES_MAX}"
        )));
    }
    Ok(())
}

impl MetadataState {
    /// Adds each valid ACL; one that exists already counts as created, as in Kafka.
    pub(crate) fn create_acls(&mut self, acls: &[AclBinding]) -> Outcome {
        too_many(acls.len())?;
        let mut results = Vec::with_capacity(acls.len());
        let mut changes = Changes::default();
        for a in acls {
            let result = match a.check() {
                Err(why) => Some(MetadataError::InvalidRequest(why)),
                Ok(()) if self.acls.contains(a) => None,
                Ok(()) if self.acls.len() >= ACLS_MAX => Some(MetadataError::PolicyViolation(
                    format!("the cluster has {ACLS_MAX} ACLs, the most it allows"),
                )),
                Ok(()) => {
                    self.acls.insert(a.clone());
                    changes.acls_added.push(a.clone());
                    None
                }
            };
            results.push(result);
        }
        let changed = changes.has_acl_changes().then_some(changes);
        Ok((Reply::AclsCreated(results), changed))
    }

    /// Removes every ACL each filter matches; reports them per filter.
    pub(crate) fn delete_acls(&mut self, filters: &[AclFilter]) -> Outcome {
        too_many(filters.len())?;
        let mut results = Vec::with_capacity(filters.len());
        let mut changes = Changes::default();
        for f in filters {
            let matched: Vec<AclBinding> =
                self.acls.iter().filter(|a| f.matches(a)).cloned().collect();
            for a in &matched {
                self.acls.remove(a);
                changes.acls_removed.push(a.clone());
            }
            results.push(matched);
        }
        let changed = changes.has_acl_changes().then_some(changes);
        Ok((Reply::AclsDeleted(results), changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::acl::*;

    fn acl(name: &str, pattern: PatternType, op: Operation) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn acls_are_created_once_and_deleted_by_filter() {
        let mut s = MetadataState::default();
        let a = acl("orders", PatternType::Literal, Operation::Read);
        let b = acl("ord", PatternType::Prefixed, Operation::Write);
        let mut bad = a.clone();
        bad.principal = "alice".into();
        let (reply, changes) = s
            .apply(3, &Command::CreateAcls(vec![a.clone(), b.clone(), bad]))
            .unwrap();
        let Reply::AclsCreated(r) = reply else {
            panic!("{reply:?}")
        };
        assert!(r[0].is_none() && r[1].is_none());
        assert_eq!(r[2].as_ref().map(|e| e.kafka_code()), Some(42));
        assert_eq!(
            (changes.acls_added.len(), s.acls.len(), s.version),
            (2, 2, 3)
        );

        // Again: no change, the version stays.
        let (_, changes) = s.apply(4, &Command::CreateAcls(vec![a.clone()])).unwrap();
        assert!(changes.is_empty() && s.version == 3);

        let filter = AclFilter {
            resource_type: Some(ResourceType::Topic),
            resource_name: Some("orders".into()),
            pattern: PatternFilter::Match,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        let (reply, changes) = s.apply(5, &Command::DeleteAcls(vec![filter])).unwrap();
        let Reply::AclsDeleted(r) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(
            r[0].len(),
            2,
            "the literal and the prefixed ACL both apply to orders"
        );
        assert_eq!(changes.acls_removed.len(), 2);
        assert!(s.acls.is_empty() && s.version == 5);
    }

    #[test]
    fn acls_survive_a_snapshot() {
        let mut s = MetadataState::default();
        s.apply(
            1,
            &Command::CreateAcls(vec![acl("t", PatternType::Literal, Operation::All)]),
        )
        .unwrap();
        let back: MetadataState =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
