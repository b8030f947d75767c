//! `Cluster`: a Weir cluster, its coordinator quorum and its brokers.

// Each `printcolumn(...)` repeats `type_ = ...`; clippy reads the repeats as duplicates.
#![allow(clippy::duplicated_attributes)]

use super::Condition;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Broker settings a `Cluster` may set for all its brokers (`spec.config`), with the Kafka name
/// each takes and the `weir-broker` environment variable it becomes.
pub const BROKER_CONFIG_KEYS: &[(&str, &str)] = &[
    ("auto.create.topics.enable", "WEIR_AUTO_CREATE_TOPICS"),
    ("flush.messages", "WEIR_FLUSH_MESSAGES"),
    ("flush.ms", "WEIR_FLUSH_MS"),
    (
        "group.initial.rebalance.delay.ms",
        "WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS",
    ),
    (
        "group.max.session.timeout.ms",
        "WEIR_GROUP_MAX_SESSION_TIMEOUT_MS",
    ),
    ("group.max.size", "WEIR_GROUP_MAX_SIZE"),
    (
        "group.min.session.timeout.ms",
        "WEIR_GROUP_MIN_SESSION_TIMEOUT_MS",
    ),
    ("min.insync.replicas", "WEIR_MIN_INSYNC_REPLICAS"),
    (
        "offsets.topic.num.partitions",
        "WEIR_OFFSETS_TOPIC_PARTITIONS",
    ),
    (
        "offsets.topic.replication.factor",
        "WEIR_OFFSETS_TOPIC_REPLICATION_FACTOR",
    ),
    ("replica.lag.time.max.ms", "WEIR_REPLICA_LAG_TIME_MAX_MS"),
];

/// Settings that belong to the coordinators (cluster-wide defaults for new topics).
pub const COORDINATOR_CONFIG_KEYS: &[(&str, &str)] = &[
    (
        "default.replication.factor",
        "WEIR_DEFAULT_REPLICATION_FACTOR",
    ),
    ("num.partitions", "WEIR_DEFAULT_PARTITIONS"),
];

/// A Weir cluster: a coordinator quorum (1, 3 or 5 voters) and a set of brokers, each a
/// StatefulSet with its own headless Service, plus a bootstrap Service for clients.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "wcl",
    category = "weir",
    derive = "PartialEq",
    doc = "A Weir cluster: a coordinator quorum and brokers speaking the Kafka protocol.",
    // The name prefixes Service and StatefulSet names (`<name>-coordinator-4` must stay a
    // valid DNS label and leave room for the controller-revision-hash label).
    validation = Rule::new("self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("a Cluster's name must be a DNS label of at most 40 characters: lowercase letters, digits and '-', starting with a letter"),
    printcolumn(
        name = "Brokers",
        type_ = "integer",
        json_path = ".spec.brokers.replicas"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.brokersReady"),
    printcolumn(
        name = "Coordinators",
        type_ = "integer",
        json_path = ".spec.coordinators.replicas"
    ),
    printcolumn(name = "Bootstrap", type_ = "string", json_path = ".status.bootstrap"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The Weir version to run; picks the images `<repository>:<version>`. Defaults to the
    /// operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Images to run instead of the operator's defaults for `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// The metadata quorum.
    #[serde(default)]
    pub coordinators: CoordinatorSpec,
    /// The brokers.
    pub brokers: BrokerSpec,
    /// Listeners clients connect to.
    #[serde(default)]
    pub listeners: ListenersSpec,
    /// Broker and cluster settings by their Kafka names, for example `min.insync.replicas`,
    /// `default.replication.factor`, `num.partitions`, `auto.create.topics.enable`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = cluster_config_keys_rule)]
    pub config: BTreeMap<String, String>,
}

/// Container images and how to pull them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// The broker image, `repository:tag` or `repository@digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// The coordinator image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

/// Kubernetes' image pull policies.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The coordinator quorum.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorSpec {
    /// Voters in the quorum: 1, 3 or 5. Fixed once the cluster exists: the quorum is bootstrapped
    /// with this membership.
    #[serde(default = "default_coordinator_replicas")]
    #[x_kube(validation = Rule::new("self == 1 || self == 3 || self == 5").message("coordinators.replicas must be 1, 3 or 5"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("coordinators.replicas cannot change after creation: the quorum is bootstrapped with this membership"))]
    pub replicas: i32,
    /// Each coordinator's volume for the Raft log and snapshots.
    #[serde(default = "default_coordinator_storage")]
    pub storage: StorageSpec,
    /// CPU and memory for each coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for CoordinatorSpec {
    fn default() -> Self {
        CoordinatorSpec {
            replicas: default_coordinator_replicas(),
            storage: default_coordinator_storage(),
            resources: None,
        }
    }
}

fn default_coordinator_replicas() -> i32 {
    3
}

fn default_coordinator_storage() -> StorageSpec {
    StorageSpec {
        size: "1Gi".into(),
        storage_class_name: None,
    }
}

/// The brokers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    /// Number of brokers. Scaling down first moves every replica off the brokers that go away.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 256").message("brokers.replicas must be between 1 and 256"))]
    pub replicas: i32,
    /// Each broker's volume for partition logs.
    pub storage: StorageSpec,
    /// CPU and memory for each broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Spread replicas over racks: each broker's rack is its node's value of this label
    /// (for example `topology.kubernetes.io/zone`), and pods are spread over its values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
}

/// A persistent volume per pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("storage cannot change after creation (StatefulSet volume claim templates are immutable); resize the PersistentVolumeClaims instead"))]
pub struct StorageSpec {
    /// Volume size, a Kubernetes quantity such as `10Gi`.
    #[x_kube(validation = Rule::new("quantity(self).isGreaterThan(quantity('0'))").message("storage.size must be a positive quantity such as 10Gi"))]
    pub size: String,
    /// The StorageClass; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Rack awareness.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// The node label whose value is a broker's rack: `topology.kubernetes.io/zone` or
    /// `topology.kubernetes.io/region`, the labels Kubernetes copies from a node onto its pods
    /// (PodTopologyLabels), so the broker reads it with the downward API.
    #[x_kube(validation = Rule::new("self == 'topology.kubernetes.io/zone' || self == 'topology.kubernetes.io/region'").message("rack.topologyKey must be topology.kubernetes.io/zone or topology.kubernetes.io/region"))]
    pub topology_key: String,
}

/// Where clients connect.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// The Kafka listener inside the Kubernetes cluster: the bootstrap Service and each broker's
    /// address on the headless Service.
    #[serde(default)]
    pub kafka: KafkaListener,
}

/// The plaintext Kafka listener.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaListener {
    /// Port of the Kafka protocol on every broker and on the bootstrap Service.
    #[serde(default = "default_kafka_port")]
    #[x_kube(validation = Rule::new("self >= 1024 && self <= 65535 && self != 9093 && self != 9644").message("listeners.kafka.port must be 1024-65535 and not 9093 (replication) or 9644 (metrics)"))]
    pub port: i32,
}

impl Default for KafkaListener {
    fn default() -> Self {
        KafkaListener {
            port: default_kafka_port(),
        }
    }
}

fn default_kafka_port() -> i32 {
    9092
}

/// What the operator last saw of a cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// `host:port` clients bootstrap from.
    #[serde(default)]
    pub bootstrap: Option<String>,
    /// Broker pods ready (registered with the coordinators and caught up).
    #[serde(default)]
    pub brokers_ready: i32,
    /// Coordinator pods ready.
    #[serde(default)]
    pub coordinators_ready: i32,
    /// Partitions whose in-sync replicas are fewer than their replicas.
    #[serde(default)]
    pub under_replicated_partitions: Option<i32>,
    /// Broker ids whose replicas are being moved away before a scale-down.
    #[serde(default)]
    pub draining_brokers: Vec<i32>,
}

fn cluster_config_keys_rule(schema: &mut schemars::Schema) {
    let keys: Vec<&str> = BROKER_CONFIG_KEYS
        .iter()
        .chain(COORDINATOR_CONFIG_KEYS)
        .map(|(k, _)| *k)
        .collect();
    add_keys_rule(schema, "config", &keys);
}

/// Adds a CEL rule to a map schema: every key must be one of `keys`; the message lists them.
pub(crate) fn add_keys_rule(schema: &mut schemars::Schema, what: &str, keys: &[&str]) {
    let list = keys
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rule = serde_json::json!({
        "rule": format!("self.all(k, k in [{list}])"),
        "message": format!("unknown {what} key; allowed: {}", keys.join(", ")),
    });
    if let Some(obj) = schema.as_object_mut() {
        // Bounds keep the rule's estimated cost within the API server's CEL budget (without
        // them it refuses the CRD), and no more keys than the allowed ones can be valid.
        obj.insert("maxProperties".into(), serde_json::json!(keys.len()));
        if let Some(values) = obj
            .get_mut("additionalProperties")
            .and_then(|v| v.as_object_mut())
        {
            values.insert(
                "maxLength".into(),
                serde_json::json!(weir_model::limits::CONFIG_VALUE_BYTES_MAX),
            );
        }
        if let Some(rules) = obj
            .entry("x-kubernetes-validations")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
            .as_array_mut()
        {
            rules.push(rule);
        }
    }
}
