//! `Topic`: a topic of a Weir cluster, managed the GitOps way.

// Each `printcolumn(...)` repeats `type_ = ...`; clippy reads the repeats as duplicates.
#![allow(clippy::duplicated_attributes)]

use super::Condition;
use super::cluster::add_keys_rule;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The finalizer that lets the operator delete (or deliberately keep) the Weir topic before
/// the resource goes away.
pub const TOPIC_FINALIZER: &str = "weir.dev/topic";

/// Annotation that lets a `Topic` take over a topic that already exists in the cluster (its
/// configs are then replaced by `spec.config`). Without it such a resource reports
/// `AlreadyExists` and changes nothing, so a typo cannot rewrite or delete someone's topic.
pub const ADOPT_ANNOTATION: &str = "weir.dev/adopt";

/// A topic of a Weir cluster. The operator creates it, raises its partition count, keeps its
/// config equal to `spec.config` (changes made behind its back are undone) and, on deletion,
/// deletes it or keeps it as `deletionPolicy` says.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "wt",
    category = "weir",
    derive = "PartialEq",
    doc = "A topic of a Weir cluster.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(
        name = "Topic",
        type_ = "string",
        json_path = ".status.topicName",
        priority = 1
    ),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(
        name = "Replication",
        type_ = "integer",
        json_path = ".spec.replicationFactor"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.topicName) == has(oldSelf.topicName)").message("topicName cannot be added or removed after creation; create a new Topic instead"))]
pub struct TopicSpec {
    /// The `Cluster` (in this namespace) the topic lives in.
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster cannot change; create a new Topic instead"))]
    #[x_kube(validation = Rule::new("self != ''").message("cluster must name a Cluster in this namespace"))]
    pub cluster: String,
    /// The topic's name in Weir; defaults to the resource's name. Kafka's rules: 1 to 249 of
    /// `[a-zA-Z0-9._-]`, and not `.` or `..`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("topicName cannot change; create a new Topic instead"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9._-]{1,249}$') && self != '.' && self != '..'").message("topicName must be 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-' and not '.' or '..'"))]
    #[x_kube(validation = Rule::new("!self.startsWith('__')").message("topicName must not start with '__': internal topics such as __consumer_offsets are the cluster's own"))]
    pub topic_name: Option<String>,
    /// Number of partitions. It can grow; it can never shrink (Kafka cannot remove partitions).
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10000").message("partitions must be between 1 and 10000"))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions cannot decrease: Kafka topics cannot lose partitions"))]
    pub partitions: i32,
    /// Replicas of every partition. Fixed at creation.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 16").message("replicationFactor must be between 1 and 16"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replicationFactor cannot change after creation"))]
    pub replication_factor: i32,
    /// Topic configs by their Kafka names (`retention.ms`, `cleanup.policy`, ...). Keys not set
    /// here are the cluster's defaults; keys set on the topic by other means are removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = topic_config_keys_rule)]
    pub config: BTreeMap<String, String>,
    /// What deleting this resource does to the topic: `Delete` (the default) deletes it and
    /// its data; `Retain` leaves it in the cluster.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What deleting a `Topic` resource does to the topic.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// What the operator last did with a topic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// `Ready`, with a reason: `Created`, `Updated`, `InSync`, `ClusterNotFound`,
    /// `ClusterUnavailable`, `Conflict`, `Invalid`, `PartitionsDecrease`, `Error`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// The topic's name in Weir.
    #[serde(default)]
    pub topic_name: Option<String>,
    /// The topic's id in Weir (changes if the topic is deleted and created again).
    #[serde(default)]
    pub topic_id: Option<String>,
    /// Partitions the topic has in the cluster.
    #[serde(default)]
    pub partitions: Option<i32>,
}

impl Topic {
    /// The topic's name in Weir: `spec.topicName`, else the resource's name.
    pub fn topic_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

fn topic_config_keys_rule(schema: &mut schemars::Schema) {
    let keys: Vec<&str> = weir_model::topic_config::TOPIC_CONFIG_KEYS
        .iter()
        .map(|k| k.name)
        .collect();
    add_keys_rule(schema, "topic config", &keys);
}
