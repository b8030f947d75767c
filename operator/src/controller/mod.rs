//! The three controllers and what they share.
//!
//! ```text
//! watch Cluster ──┐  (+ owned StatefulSets, Services, ConfigMaps, PDBs)
//!                 ├─ cluster::reconcile ── SSA desired::* ── drain/spread via ClusterAdmin ── status
//! watch Topic ────┼─ topic::reconcile ──── finalizer ── ClusterAdmin create/alter/delete ── status
//! watch ConsumerGroup ─ group::reconcile ─ GroupReader (Kafka protocol) ── status
//! ```
//!
//! Reconciles are level-based: each reads the world, compares it to the resource, acts and
//! requeues. Topic and group reconciles also requeue on a timer, because changes made in the
//! Weir cluster itself (a topic altered with a Kafka admin client) raise no Kubernetes event.

pub mod cluster;
pub mod group;
pub mod topic;

use crate::admin::{AdminError, AdminFactory, ClusterAdmin};
use crate::crd::{Cluster, Condition};
use crate::desired::{Defaults, Names};
use crate::group_reader::GroupReader;
use crate::metrics::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The field manager of every server-side apply: one, so the operator's fields are one owner's.
pub const FIELD_MANAGER: &str = "weir-operator";

/// Everything a reconcile needs.
pub struct Context {
    pub client: kube::Client,
    pub defaults: Defaults,
    pub admins: Arc<dyn AdminFactory>,
    pub groups: Arc<dyn GroupReader>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    /// Coordinator addresses to use instead of the in-cluster ones, by `namespace/cluster`
    /// (an operator running outside the Kubernetes cluster, as in development and tests).
    pub coordinator_overrides: BTreeMap<String, Vec<String>>,
    /// Kafka bootstrap addresses to use instead of the in-cluster bootstrap Service.
    pub bootstrap_overrides: BTreeMap<String, Vec<String>>,
    /// The newest metadata seen per cluster (`namespace/name` -> cluster id, version).
    pub seen: std::sync::Mutex<BTreeMap<String, (String, i64)>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("defaults", &self.defaults)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// How often things are looked at again.
#[derive(Clone, Debug)]
pub struct Timing {
    /// A steady cluster.
    pub cluster_resync: Duration,
    /// A cluster that is rolling out, draining or spreading.
    pub cluster_busy: Duration,
    /// A topic in sync: how soon a change made behind the operator's back is undone.
    pub topic_resync: Duration,
    /// A consumer group's status.
    pub group_refresh: Duration,
    /// After an error.
    pub retry: Duration,
}

impl Context {
    /// The coordinators of a cluster (override, else the in-cluster addresses).
    pub fn coordinators(&self, cluster: &Cluster) -> Vec<String> {
        let names = Names::of(cluster);
        let key = format!("{}/{}", names.namespace, names.cluster);
        self.coordinator_overrides
            .get(&key)
            .cloned()
            .unwrap_or_else(|| names.coordinator_addrs(cluster.spec.coordinators.replicas))
    }

    /// Refuses a view older than one already seen, or from another cluster: a coordinator that
    /// lags, or came back on an empty volume, must not make a drain look finished.
    pub fn check_fresh(
        &self,
        cluster: &Cluster,
        view: &crate::admin::ClusterView,
    ) -> Result<(), String> {
        let names = Names::of(cluster);
        let key = format!("{}/{}", names.namespace, names.cluster);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        check_fresh(&mut seen, &key, &view.cluster_id, view.version)
    }

    pub fn admin(&self, cluster: &Cluster) -> Arc<dyn ClusterAdmin> {
        self.admins.admin(&self.coordinators(cluster))
    }

    /// Where Kafka clients of a cluster bootstrap.
    pub fn bootstrap(&self, cluster: &Cluster) -> Vec<String> {
        let names = Names::of(cluster);
        let key = format!("{}/{}", names.namespace, names.cluster);
        self.bootstrap_overrides
            .get(&key)
            .cloned()
            .unwrap_or_else(|| vec![names.bootstrap(cluster.spec.listeners.kafka.port)])
    }

    /// Publishes an event about `obj`; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(object = %obj.meta().name.clone().unwrap_or_default(), reason, error = %weir_model::Chain(&e), "cannot publish event");
        }
    }
}

/// What a reconcile can fail with. Each is retried after `Timing::retry`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("coordinators: {0}")]
    Admin(#[from] AdminError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A short label for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Admin(AdminError::Unavailable { .. }) => "coordinators_unavailable",
            Error::Admin(AdminError::Refused { .. }) => "coordinators_refused",
            Error::Finalizer(_) => "finalizer",
            Error::Invalid(_) => "invalid",
        }
    }
}

/// Sets a condition in `conditions`, keeping its transition time when its status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let now = Time(Timestamp::now());
    let old = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match old.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now,
    };
    let c = Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    };
    match old {
        Some(i) => conditions[i] = c,
        None => conditions.push(c),
    }
}

/// The namespace of a namespaced resource.
pub fn namespace<K: ResourceExt>(obj: &K) -> String {
    obj.namespace().unwrap_or_else(|| "default".into())
}

/// The rule behind [`Context::check_fresh`]: a view needs a cluster id, the same one as before,
/// and a version no older than the newest seen; an accepted view becomes the newest seen.
fn check_fresh(
    seen: &mut BTreeMap<String, (String, i64)>,
    key: &str,
    cluster_id: &str,
    version: i64,
) -> Result<(), String> {
    if cluster_id.is_empty() {
        return Err("the coordinators answered without a cluster id".into());
    }
    if let Some((id, newest)) = seen.get(key) {
        if id != cluster_id {
            return Err(format!(
                "the coordinators now report cluster id {cluster_id} where {id} was seen; not acting on it"
            ));
        }
        if version < *newest {
            return Err(format!(
                "metadata version {version} is older than version {newest} already seen"
            ));
        }
    }
    seen.insert(key.to_string(), (cluster_id.to_string(), version));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_older_than_seen_or_from_another_cluster_are_not_acted_on() {
        let mut seen = BTreeMap::new();
        assert!(check_fresh(&mut seen, "ns/c", "", 1).is_err());
        assert!(check_fresh(&mut seen, "ns/c", "id-1", 5).is_ok());
        assert!(check_fresh(&mut seen, "ns/c", "id-1", 5).is_ok());
        assert!(
            check_fresh(&mut seen, "ns/c", "id-1", 4)
                .unwrap_err()
                .contains("older")
        );
        assert!(
            check_fresh(&mut seen, "ns/c", "id-2", 9)
                .unwrap_err()
                .contains("cluster id")
        );
        assert!(check_fresh(&mut seen, "ns/c", "id-1", 7).is_ok());
        // Another cluster has its own history.
        assert!(check_fresh(&mut seen, "ns/d", "id-2", 1).is_ok());
    }
}
