//! `ConsumerGroup`: a consumer group of a Weir cluster, observed.

// Each `printcolumn(...)` repeats `type_ = ...`; clippy reads the repeats as duplicates.
#![allow(clippy::duplicated_attributes)]

use super::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A consumer group of a Weir cluster. The operator keeps its status current: state, members,
/// and per partition the committed offset, the end offset and the lag. Members are the
/// applications themselves; this resource does not create the group.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "ConsumerGroup",
    namespaced,
    status = "ConsumerGroupStatus",
    shortname = "wcg",
    category = "weir",
    derive = "PartialEq",
    doc = "A consumer group of a Weir cluster, with its state and lag.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.members"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.totalLag"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.groupId) == has(oldSelf.groupId)").message("groupId cannot be added or removed after creation"))]
pub struct ConsumerGroupSpec {
    /// The `Cluster` (in this namespace) the group lives in.
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster cannot change"))]
    pub cluster: String,
    /// The group's id; defaults to the resource's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("groupId cannot change"))]
    #[x_kube(validation = Rule::new("self.size() >= 1 && self.size() <= 255").message("groupId must be 1 to 255 characters"))]
    pub group_id: Option<String>,
}

impl ConsumerGroup {
    /// The group id: `spec.groupId`, else the resource's name.
    pub fn group_id(&self) -> String {
        self.spec
            .group_id
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

/// The group as the operator last saw it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    /// `Ready` (the group was read from the cluster), with a reason when it was not.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// Kafka's group state: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`,
    /// `Dead`, or `NotFound` when the cluster has no such group.
    #[serde(default)]
    pub state: Option<String>,
    /// Number of members.
    #[serde(default)]
    pub members: i32,
    /// The members and the partitions each is assigned.
    #[serde(default)]
    pub member_details: Vec<GroupMember>,
    /// Per partition with a committed offset.
    #[serde(default)]
    pub offsets: Vec<PartitionLag>,
    /// Sum of the lag over every partition.
    #[serde(default)]
    pub total_lag: Option<i64>,
    /// When this status last changed (RFC 3339); the group is read every refresh interval.
    #[serde(default)]
    pub last_updated: Option<String>,
}

/// One member of a group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    pub member_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// Assigned partitions as `topic-partition`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignment: Vec<String>,
}

/// Committed offset, end offset and lag of one partition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// The high watermark: the end a consumer can reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}
