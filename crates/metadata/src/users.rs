//! [`Command::AlterScramCredentials`]: SASL users' SCRAM credentials, with Kafka's
//! per-user results.

use crate::apply::Outcome;
use crate::state::*;
use std::collections::{BTreeMap, BTreeSet};
use weir_model::limits::{
    SCRAM_ALTERATIONS_MAX, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN, SCRAM_SALT_BYTES_MAX,
    SCRAM_USERS_MAX, USER_NAME_BYTES_MAX,
};
use weir_model::{ScramCredential, ScramMechanism};

/// A credential's bounds: Kafka's iteration range, a salt, and keys as long as the hash.
fn check_credential(
    user: &str,
    m: ScramMechanism,
    c: &ScramCredential,
) -> Result<(), MetadataError> {
    let refuse = |why: String| Err(MetadataError::UnacceptableCredential(why));
    if user.is_empty() || user.len() > USER_NAME_BYTES_MAX || user.chars().any(char::is_control) {
        return refuse(format!(
            "a user name has 1 to {USER_NAME_BYTES_MAX} bytes and no control characters"
        ));
    }
    if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&c.iterations) {
        return refuse(format!(
            "{} iterations for {m}; allowed are {SCRAM_ITERATIONS_MIN} to {SCRAM_ITERATIONS_MAX}",
            c.iterations
        ));
    }
    if c.salt.is_empty() || c.salt.len() > SCRAM_SALT_BYTES_MAX {
        return refuse(format!(
            "a salt of {} bytes; allowed are 1 to {SCRAM_SALT_BYTES_MAX}",
            c.salt.len()
        ));
    }
    if c.stored_key.len() != m.hash_len() || c.server_key.len() != m.hash_len() {
        return refuse(format!("{m} keys are {} bytes", m.hash_len()));
    }
    Ok(())
}

/// Each user's first refusal, before anything changes.
fn refusals(
    users: &BTreeMap<String, UserCredentials>,
    upsertions: &[ScramUpsertion],
    deletions: &[ScramDeletion],
) -> BTreeMap<String, MetadataError> {
    let mut refused = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let named = deletions
        .iter()
        .map(|d| (&d.user, d.mechanism))
        .chain(upsertions.iter().map(|u| (&u.user, u.mechanism)));
    for (user, m) in named {
        if !seen.insert((user, m)) {
            refused.entry(user.clone()).or_insert_with(|| {
                MetadataError::DuplicateResource(format!(
                    "user '{user}' has more than one change for {m}"
                ))
            });
        }
    }
    for d in deletions {
        if !users
            .get(&d.user)
            .is_some_and(|c| c.contains_key(&d.mechanism))
        {
            refused.entry(d.user.clone()).or_insert_with(|| {
                MetadataError::ResourceNotFound(format!(
                    "user '{}' has no {} credential to delete",
                    d.user, d.mechanism
                ))
            });
        }
    }
    for u in upsertions {
        if let Err(e) = check_credential(&u.user, u.mechanism, &u.credential) {
            refused.entry(u.user.clone()).or_insert(e);
        }
    }
    refused
}

impl MetadataState {
    pub(crate) fn alter_scram_credentials(&mut self, a: &ScramAlteration) -> Outcome {
        let (upsertions, deletions) = (&a.upsertions, &a.deletions);
        if upsertions.len() + deletions.len() > SCRAM_ALTERATIONS_MAX {
            return Err(MetadataError::InvalidRequest(format!(
                "{} credential changes in one request; at most {SCRAM_ALTERATIONS_MAX}",
                upsertions.len() + deletions.len()
            )));
        }
        let mut refused = refusals(&self.users, upsertions, deletions);
        let new_users: BTreeSet<&String> = upsertions
            .iter()
            .map(|u| &u.user)
            .filter(|u| !self.users.contains_key(*u) && !refused.contains_key(*u))
            .collect();
        if self.users.len() + new_users.len() > SCRAM_USERS_MAX {
            for u in new_users {
                refused.insert(
                    u.clone(),
                    MetadataError::PolicyViolation(format!(
                        "the cluster has {} users; at most {SCRAM_USERS_MAX}",
                        self.users.len()
                    )),
                );
            }
        }
        let mut changes = Changes::default();
        for d in deletions.iter().filter(|d| !refused.contains_key(&d.user)) {
            if let Some(creds) = self.users.get_mut(&d.user) {
                creds.remove(&d.mechanism);
                if creds.is_empty() {
                    self.users.remove(&d.user);
                }
                changes.users.insert(d.user.clone());
            }
        }
        for u in upsertions.iter().filter(|u| !refused.contains_key(&u.user)) {
            let creds = self.users.entry(u.user.clone()).or_default();
            if a.only_if_absent && creds.contains_key(&u.mechanism) {
                continue;
            }
            if creds.insert(u.mechanism, u.credential.clone()).as_ref() != Some(&u.credential) {
                changes.users.insert(u.user.clone());
            }
        }
        let named: BTreeSet<&String> = upsertions
            .iter()
            .map(|u| &u.user)
            .chain(deletions.iter().map(|d| &d.user))
            .collect();
        let results = named
            .into_iter()
            .map(|u| (u.clone(), refused.remove(u)))
            .collect();
        let changed = (!changes.users.is_empty()).then_some(changes);
        Ok((Reply::ScramAltered(results), changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(m: ScramMechanism, iterations: u32, fill: u8) -> ScramCredential {
        ScramCredential {
            salt: vec![fill; 16],
            stored_key: vec![fill; m.hash_len()],
            server_key: vec![fill; m.hash_len()],
            iterations,
        }
    }

    fn up(user: &str, m: ScramMechanism, iterations: u32, fill: u8) -> ScramUpsertion {
        ScramUpsertion {
            user: user.into(),
            mechanism: m,
            credential: cred(m, iterations, fill),
        }
    }

    fn del(user: &str, m: ScramMechanism) -> ScramDeletion {
        ScramDeletion {
            user: user.into(),
            mechanism: m,
        }
    }

    fn alter(
        s: &mut MetadataState,
        index: u64,
        upsertions: Vec<ScramUpsertion>,
        deletions: Vec<ScramDeletion>,
        only_if_absent: bool,
    ) -> (Vec<(String, Option<MetadataError>)>, Changes) {
        let cmd = Command::AlterScramCredentials(ScramAlteration {
            upsertions,
            deletions,
            only_if_absent,
        });
        match s.apply(index, &cmd).expect("accepted") {
            (Reply::ScramAltered(r), changes) => (r, changes),
            other => panic!("unexpected {other:?}"),
        }
    }

    use ScramMechanism::{Sha256, Sha512};

    #[test]
    fn credentials_are_set_replaced_and_deleted() {
        let mut s = MetadataState::default();
        let (r, c) = alter(
            &mut s,
            5,
            vec![up("alice", Sha256, 4096, 1), up("alice", Sha512, 8192, 2)],
            vec![],
            false,
        );
        assert_eq!(r, vec![("alice".into(), None)]);
        assert!(c.users.contains("alice"));
        assert_eq!(s.version, 5);
        assert_eq!(s.users["alice"].len(), 2);

        // Replacing one and deleting the other, in one request.
        alter(
            &mut s,
            6,
            vec![up("alice", Sha256, 4096, 3)],
            vec![del("alice", Sha512)],
            false,
        );
        assert_eq!(
            s.users["alice"].keys().copied().collect::<Vec<_>>(),
            vec![Sha256]
        );
        assert_eq!(s.users["alice"][&Sha256].salt[0], 3);

        // The last credential gone, the user is gone.
        let (_, c) = alter(&mut s, 7, vec![], vec![del("alice", Sha256)], false);
        assert!(s.users.is_empty() && c.users.contains("alice"));
    }

    #[test]
    fn a_users_refused_change_keeps_all_of_its_changes_out() {
        let mut s = MetadataState::default();
        alter(&mut s, 1, vec![up("bob", Sha256, 4096, 1)], vec![], false);
        let (r, _) = alter(
            &mut s,
            2,
            vec![
                up("bob", Sha512, 4096, 2),
                up("carol", Sha256, 4096, 3),
                up("dave", Sha256, 100, 4),
            ],
            vec![del("bob", Sha256), del("bob", Sha256), del("erin", Sha512)],
            false,
        );
        let codes: BTreeMap<String, Option<i16>> = r
            .into_iter()
            .map(|(u, e)| (u, e.map(|e| e.kafka_code())))
            .collect();
        assert_eq!(codes["bob"], Some(92), "DUPLICATE_RESOURCE");
        assert_eq!(codes["carol"], None);
        assert_eq!(codes["dave"], Some(93), "UNACCEPTABLE_CREDENTIAL");
        assert_eq!(codes["erin"], Some(91), "RESOURCE_NOT_FOUND");
        assert_eq!(
            s.users["bob"].keys().copied().collect::<Vec<_>>(),
            vec![Sha256]
        );
        assert!(s.users.contains_key("carol") && !s.users.contains_key("dave"));
    }

    #[test]
    fn bad_credentials_are_unacceptable() {
        let mut s = MetadataState::default();
        let mut short = up("u", Sha512, 4096, 1);
        short.credential.stored_key.truncate(32);
        let mut saltless = up("v", Sha256, 4096, 1);
        saltless.credential.salt.clear();
        let (r, c) = alter(
            &mut s,
            1,
            vec![
                short,
                saltless,
                up("", Sha256, 4096, 1),
                up("w", Sha256, 20000, 1),
            ],
            vec![],
            false,
        );
        assert!(
            r.iter()
                .all(|(_, e)| matches!(e, Some(MetadataError::UnacceptableCredential(_)))),
            "{r:?}"
        );
        assert!(c.is_empty() && s.users.is_empty() && s.version == 0);
    }

    #[test]
    fn only_if_absent_keeps_what_is_there() {
        let mut s = MetadataState::default();
        alter(&mut s, 1, vec![up("admin", Sha512, 4096, 1)], vec![], true);
        let (r, c) = alter(
            &mut s,
            2,
            vec![up("admin", Sha512, 4096, 9), up("admin", Sha256, 4096, 9)],
            vec![],
            true,
        );
        assert_eq!(r, vec![("admin".into(), None)]);
        assert_eq!(s.users["admin"][&Sha512].salt[0], 1, "kept");
        assert_eq!(s.users["admin"][&Sha256].salt[0], 9, "added");
        assert!(c.users.contains("admin"));
        // Again: nothing changes, the version stays.
        let (_, c) = alter(&mut s, 3, vec![up("admin", Sha256, 4096, 7)], vec![], true);
        assert!(c.is_empty() && s.version == 2);
    }

    #[test]
    fn too_many_changes_at_once_are_refused() {
        let mut s = MetadataState::default();
        let many: Vec<_> = (0..=SCRAM_ALTERATIONS_MAX)
            .map(|i| up(&format!("u{i}"), Sha256, 4096, 1))
            .collect();
        let cmd = Command::AlterScramCredentials(ScramAlteration {
            upsertions: many,
            deletions: vec![],
            only_if_absent: false,
        });
        assert!(matches!(
            s.apply(1, &cmd),
            Err(MetadataError::InvalidRequest(_))
        ));
    }

    #[test]
    fn users_survive_a_snapshot_and_old_snapshots_have_none() {
        let mut s = MetadataState::default();
        alter(&mut s, 1, vec![up("alice", Sha512, 4096, 1)], vec![], false);
        let json = serde_json::to_string(&s).expect("serialise");
        let back: MetadataState = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, s);
        let mut old = serde_json::to_value(MetadataState::default()).expect("value");
        old.as_object_mut().expect("object").remove("users");
        let back: MetadataState = serde_json::from_value(old).expect("old snapshot");
        assert!(back.users.is_empty());
    }
}
