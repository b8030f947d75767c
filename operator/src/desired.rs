//! What a `Cluster` should look like in Kubernetes: pure functions, `Cluster` in, objects out.
//!
//! Nothing here talks to the API server; `controller::cluster` server-side-applies what these
//! return. Names, labels and addresses are derived here once, so the StatefulSets, Services and
//! the operator's own coordinator client agree on them.
//!
//! ```text
//! Cluster "c" in namespace "ns"
//!   ConfigMap    c-coordinator-config   WEIR_* settings of the coordinators
//!   ConfigMap    c-broker-config        WEIR_* settings of the brokers
//!   Service      c-coordinator          headless: c-coordinator-N.c-coordinator.ns.svc:9190
//!   StatefulSet  c-coordinator          1, 3 or 5 voters; id = pod ordinal
//!   PDB          c-coordinator          at most a minority down
//!   Service      c-broker               headless: c-broker-N.c-broker.ns.svc:{9092,9093}
//!   Service      c-bootstrap            ClusterIP over ready brokers: clients bootstrap here
//!   StatefulSet  c-broker               broker id = pod ordinal
//!   PDB          c-broker               one broker down at a time
//! ```

use crate::crd::{BROKER_CONFIG_KEYS, COORDINATOR_CONFIG_KEYS, Cluster, PullPolicy};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, TopologySpreadConstraint,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The coordinators' gRPC port (Raft, broker control, admin).
pub const COORDINATOR_PORT: i32 = 9190;
/// The brokers' replication (gRPC) port.
pub const BROKER_INTERNAL_PORT: i32 = 9093;
/// The brokers' HTTP port: `/metrics`, `/livez`, `/readyz`.
pub const BROKER_HTTP_PORT: i32 = 9644;
/// Where each pod's volume is mounted and its data kept.
pub const DATA_DIR: &str = "/var/lib/weir";
/// The user the images run as (distroless' "nonroot").
pub const RUN_AS: i64 = 65532;
/// Pod-template annotation holding a hash of the settings, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "weir.dev/config-hash";
/// Label Kubernetes (1.28+) puts on every StatefulSet pod: its ordinal.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// How long a broker has to move its leaderships away on SIGTERM, plus margin to exit.
const BROKER_TERMINATION_GRACE_SECONDS: i64 = 60;

/// What the operator was started with that shapes every cluster.
#[derive(Clone, Debug)]
pub struct Defaults {
    /// Image repository of brokers, without tag: `<repo>:<version>`.
    pub broker_repository: String,
    /// Image repository of coordinators.
    pub coordinator_repository: String,
    /// The version a `Cluster` without `spec.version` runs: the operator's own.
    pub version: String,
}

/// The two roles of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Broker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Broker => "broker",
        }
    }
}

/// Names of one cluster's objects and addresses of its pods.
#[derive(Clone, Debug)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn of(cluster: &Cluster) -> Names {
        Names {
            cluster: cluster.name_any(),
            namespace: cluster.namespace().unwrap_or_else(|| "default".into()),
        }
    }
    /// The StatefulSet and headless Service of a role.
    pub fn role(&self, role: Role) -> String {
        format!("{}-{}", self.cluster, role.as_str())
    }
    pub fn config_map(&self, role: Role) -> String {
        format!("{}-{}-config", self.cluster, role.as_str())
    }
    pub fn bootstrap_service(&self) -> String {
        format!("{}-bootstrap", self.cluster)
    }
    /// The stable DNS name of pod `ordinal` of a role.
    pub fn pod_host(&self, role: Role, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}.{}.svc",
            self.role(role),
            self.role(role),
            self.namespace
        )
    }
    /// `host:port` of every coordinator, in id order.
    pub fn coordinator_addrs(&self, replicas: i32) -> Vec<String> {
        (0..replicas)
            .map(|i| format!("{}:{COORDINATOR_PORT}", self.pod_host(Role::Coordinator, i)))
            .collect()
    }
    /// `host:port` clients bootstrap from.
    pub fn bootstrap(&self, kafka_port: i32) -> String {
        format!(
            "{}.{}.svc:{kafka_port}",
            self.bootstrap_service(),
            self.namespace
        )
    }
}

/// Labels on every object of a cluster, and the selector of a role's pods.
pub fn labels(names: &Names, role: Option<Role>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "weir".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            names.cluster.clone(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "weir-operator".to_string(),
        ),
    ]);
    if let Some(role) = role {
        l.insert(
            "app.kubernetes.io/component".to_string(),
            role.as_str().to_string(),
        );
    }
    l
}

fn selector(names: &Names, role: Role) -> BTreeMap<String, String> {
    let mut l = labels(names, Some(role));
    l.remove("app.kubernetes.io/managed-by");
    l
}

fn label_selector(names: &Names, role: Role) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector(names, role)),
        ..LabelSelector::default()
    }
}

/// The pod's volume, where its data lives.
fn data_mount() -> VolumeMount {
    VolumeMount {
        name: "data".into(),
        mount_path: DATA_DIR.into(),
        ..VolumeMount::default()
    }
}

/// The owner reference every object of the cluster carries, so deleting the `Cluster` deletes
/// them (the garbage collector) and their changes wake the operator.
pub fn owner(cluster: &Cluster) -> Option<OwnerReference> {
    cluster.controller_owner_ref(&())
}

fn meta(cluster: &Cluster, names: &Names, name: String, role: Option<Role>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names, role)),
        owner_references: owner(cluster).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The image of a role: `spec.image.<role>`, else `<default repository>:<version>`.
pub fn image(cluster: &Cluster, defaults: &Defaults, role: Role) -> String {
    let explicit = cluster.spec.image.as_ref().and_then(|i| match role {
        Role::Broker => i.broker.clone(),
        Role::Coordinator => i.coordinator.clone(),
    });
    explicit.unwrap_or_else(|| {
        let version = cluster
            .spec
            .version
            .clone()
            .unwrap_or_else(|| defaults.version.clone());
        let repo = match role {
            Role::Broker => &defaults.broker_repository,
            Role::Coordinator => &defaults.coordinator_repository,
        };
        format!("{repo}:{version}")
    })
}

/// The `WEIR_*` settings of a role from `spec.config`, by their environment names.
pub fn settings(cluster: &Cluster, role: Role) -> BTreeMap<String, String> {
    let table = match role {
        Role::Broker => BROKER_CONFIG_KEYS,
        Role::Coordinator => COORDINATOR_CONFIG_KEYS,
    };
    let mut out = BTreeMap::new();
    for (key, env) in table {
        if let Some(v) = cluster.spec.config.get(*key) {
            out.insert((*env).to_string(), v.clone());
        }
    }
    out
}

/// A role's settings as a ConfigMap its pods read with `envFrom`.
pub fn config_map(cluster: &Cluster, role: Role) -> ConfigMap {
    let names = Names::of(cluster);
    ConfigMap {
        metadata: meta(cluster, &names, names.config_map(role), Some(role)),
        data: Some(settings(cluster, role)),
        ..ConfigMap::default()
    }
}

/// A stable hash of a role's settings (FNV-1a; the value only has to change when they do).
pub fn config_hash(cluster: &Cluster, role: Role) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in settings(cluster, role) {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut s = String::new();
    let _ = write!(s, "{h:016x}");
    s
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The headless Service that gives each pod of a role a stable DNS name. Not-ready pods are
/// published too: coordinators must find each other to elect a leader before any is ready, and
/// a starting broker must be reachable by the leaders it catches up from.
pub fn headless_service(cluster: &Cluster, role: Role) -> Service {
    let names = Names::of(cluster);
    let ports = match role {
        Role::Coordinator => vec![port("grpc", COORDINATOR_PORT)],
        Role::Broker => vec![
            port("kafka", cluster.spec.listeners.kafka.port),
            port("internal", BROKER_INTERNAL_PORT),
            port("http", BROKER_HTTP_PORT),
        ],
    };
    Service {
        metadata: meta(cluster, &names, names.role(role), Some(role)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector(&names, role)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Service clients bootstrap from: only ready brokers behind it.
pub fn bootstrap_service(cluster: &Cluster) -> Service {
    let names = Names::of(cluster);
    Service {
        metadata: meta(
            cluster,
            &names,
            names.bootstrap_service(),
            Some(Role::Broker),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(&names, Role::Broker)),
            ports: Some(vec![port("kafka", cluster.spec.listeners.kafka.port)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn volume_claim(storage: &crate::crd::StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Non-root, read-only root file system, no capabilities: the binaries need none.
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        fs_group: Some(RUN_AS),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn pull_policy(cluster: &Cluster) -> Option<String> {
    cluster
        .spec
        .image
        .as_ref()
        .and_then(|i| i.pull_policy)
        .map(|p| {
            match p {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .to_string()
        })
}

fn pod_template(
    cluster: &Cluster,
    names: &Names,
    role: Role,
    container: Container,
    extra: impl FnOnce(&mut PodSpec),
) -> PodTemplateSpec {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_string(),
        config_hash(cluster, role),
    );
    let mut spec = PodSpec {
        containers: vec![container],
        security_context: Some(pod_security()),
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    };
    extra(&mut spec);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(names, Some(role))),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

fn env_from(names: &Names, role: Role) -> Vec<EnvFromSource> {
    vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: names.config_map(role),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }]
}

/// The coordinators: a StatefulSet whose pod ordinal is the voter id. All start together
/// (`Parallel`): a quorum of 3 cannot elect a leader while pods wait for each other to be ready.
pub fn coordinator_statefulset(cluster: &Cluster, defaults: &Defaults) -> StatefulSet {
    let names = Names::of(cluster);
    let replicas = cluster.spec.coordinators.replicas;
    let service = names.role(Role::Coordinator);
    let peers = names
        .coordinator_addrs(replicas)
        .iter()
        .enumerate()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",");
    let container = Container {
        name: "coordinator".into(),
        image: Some(image(cluster, defaults, Role::Coordinator)),
        image_pull_policy: pull_policy(cluster),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("WEIR_ID", &format!("metadata.labels['{POD_INDEX_LABEL}']")),
            env("WEIR_DATA_DIR", DATA_DIR),
            env("WEIR_LISTEN", format!("0.0.0.0:{COORDINATOR_PORT}")),
            env(
                "WEIR_ADVERTISED_ADDR",
                format!(
                    "$(POD_NAME).{service}.{}.svc:{COORDINATOR_PORT}",
                    names.namespace
                ),
            ),
            env("WEIR_PEERS", peers),
        ]),
        env_from: Some(env_from(&names, Role::Coordinator)),
        ports: Some(vec![ContainerPort {
            name: Some("grpc".into()),
            container_port: COORDINATOR_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(COORDINATOR_PORT),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: cluster.spec.coordinators.resources.clone(),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![data_mount()]),
        ..Container::default()
    };
    let template = pod_template(cluster, &names, Role::Coordinator, container, |_| {});
    statefulset(
        cluster,
        &names,
        Role::Coordinator,
        replicas,
        template,
        &cluster.spec.coordinators.storage,
    )
}

/// The brokers: a StatefulSet whose pod ordinal is the broker id. `replicas` is passed in, not
/// read from the spec: on a scale-down the operator keeps the old count until the brokers that
/// go away hold no replica (see `controller::cluster`).
pub fn broker_statefulset(cluster: &Cluster, defaults: &Defaults, replicas: i32) -> StatefulSet {
    let names = Names::of(cluster);
    let kafka_port = cluster.spec.listeners.kafka.port;
    let env_vars = broker_env(cluster, &names);
    let rack = cluster.spec.brokers.rack.as_ref();
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(BROKER_HTTP_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let container = Container {
        name: "broker".into(),
        image: Some(image(cluster, defaults, Role::Broker)),
        image_pull_policy: pull_policy(cluster),
        env: Some(env_vars),
        env_from: Some(env_from(&names, Role::Broker)),
        ports: Some(vec![
            ContainerPort {
                name: Some("kafka".into()),
                container_port: kafka_port,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("internal".into()),
                container_port: BROKER_INTERNAL_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: BROKER_HTTP_PORT,
                ..ContainerPort::default()
            },
        ]),
        // Ready means registered with the coordinators and caught up with every partition it
        // follows, so a rolling restart never takes down the next broker while this one is
        // still out of the ISR.
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/livez", 10, 6)),
        resources: cluster.spec.brokers.resources.clone(),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![data_mount()]),
        ..Container::default()
    };
    let spread = rack.map(|r| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: r.topology_key.clone(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(label_selector(&names, Role::Broker)),
        ..TopologySpreadConstraint::default()
    });
    let template = pod_template(cluster, &names, Role::Broker, container, |spec| {
        spec.termination_grace_period_seconds = Some(BROKER_TERMINATION_GRACE_SECONDS);
        spec.topology_spread_constraints = spread.map(|s| vec![s]);
    });
    statefulset(
        cluster,
        &names,
        Role::Broker,
        replicas,
        template,
        &cluster.spec.brokers.storage,
    )
}

/// The broker's environment: its id and data directory, its listeners and the addresses it
/// advertises (its pod's DNS name), the coordinators, and its rack when racks are on.
fn broker_env(cluster: &Cluster, names: &Names) -> Vec<EnvVar> {
    let service = names.role(Role::Broker);
    let kafka_port = cluster.spec.listeners.kafka.port;
    let host = format!("$(POD_NAME).{service}.{}.svc", names.namespace);
    let mut env_vars = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env(
            "WEIR_BROKER_ID",
            &format!("metadata.labels['{POD_INDEX_LABEL}']"),
        ),
        env("WEIR_DATA_DIR", DATA_DIR),
        env("WEIR_KAFKA_ADDR", format!("0.0.0.0:{kafka_port}")),
        env("WEIR_ADVERTISED_KAFKA_ADDR", format!("{host}:{kafka_port}")),
        env(
            "WEIR_INTERNAL_ADDR",
            format!("0.0.0.0:{BROKER_INTERNAL_PORT}"),
        ),
        env(
            "WEIR_ADVERTISED_INTERNAL_ADDR",
            format!("{host}:{BROKER_INTERNAL_PORT}"),
        ),
        env(
            "WEIR_COORDINATORS",
            names
                .coordinator_addrs(cluster.spec.coordinators.replicas)
                .join(","),
        ),
        env("WEIR_METRICS_ADDR", format!("0.0.0.0:{BROKER_HTTP_PORT}")),
    ];
    if let Some(rack) = cluster.spec.brokers.rack.as_ref() {
        // The pod's copy of its node's topology label (Kubernetes' PodTopologyLabels
        // admission copies the zone and region labels onto pods).
        env_vars.push(field_env(
            "WEIR_RACK",
            &format!("metadata.labels['{}']", rack.topology_key),
        ));
    }
    env_vars
}

/// A role's StatefulSet around its pod template: named like its headless Service, pods
/// started together (`Parallel`), one data volume per pod.
fn statefulset(
    cluster: &Cluster,
    names: &Names,
    role: Role,
    replicas: i32,
    template: PodTemplateSpec,
    storage: &crate::crd::StorageSpec,
) -> StatefulSet {
    let service = names.role(role);
    StatefulSet {
        metadata: meta(cluster, names, service.clone(), Some(role)),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(service),
            pod_management_policy: Some("Parallel".into()),
            selector: label_selector(names, role),
            template,
            volume_claim_templates: Some(vec![volume_claim(storage)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// A role's disruption budget: one broker at a time; for coordinators, a minority at a time
/// (1 of 3, 2 of 5), so voluntary evictions never break the quorum. A lone coordinator may go:
/// a budget of zero would block every node drain forever.
pub fn pod_disruption_budget(cluster: &Cluster, role: Role) -> PodDisruptionBudget {
    let names = Names::of(cluster);
    let max_unavailable = match role {
        Role::Broker => 1,
        Role::Coordinator => (cluster.spec.coordinators.replicas - 1).max(2) / 2,
    };
    PodDisruptionBudget {
        metadata: meta(cluster, &names, names.role(role), Some(role)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(label_selector(&names, role)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ClusterSpec;

    fn cluster(spec: serde_json::Value) -> Cluster {
        let spec: ClusterSpec = serde_json::from_value(spec).expect("spec");
        let mut c = Cluster::new("demo", spec);
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("u-1".into());
        c
    }

    fn defaults() -> Defaults {
        Defaults {
            broker_repository: "reg/weir/broker".into(),
            coordinator_repository: "reg/weir/coordinator".into(),
            version: "0.1.0".into(),
        }
    }

    fn small() -> Cluster {
        cluster(serde_json::json!({
            "brokers": { "replicas": 3, "storage": { "size": "10Gi" } },
            "config": { "min.insync.replicas": "2", "num.partitions": "6" }
        }))
    }

    fn env(sts: &StatefulSet) -> BTreeMap<String, String> {
        sts.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn defaults_give_three_coordinators_and_kafka_on_9092() {
        let c = small();
        assert_eq!(c.spec.coordinators.replicas, 3);
        let sts = coordinator_statefulset(&c, &defaults());
        assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(3));
        assert_eq!(
            env(&sts)["WEIR_PEERS"],
            "0=demo-coordinator-0.demo-coordinator.prod.svc:9190,1=demo-coordinator-1.demo-coordinator.prod.svc:9190,2=demo-coordinator-2.demo-coordinator.prod.svc:9190"
        );
        assert_eq!(
            Names::of(&c).bootstrap(9092),
            "demo-bootstrap.prod.svc:9092"
        );
    }

    #[test]
    fn the_broker_statefulset_takes_the_replicas_it_is_given_not_the_spec() {
        // During a drain the operator keeps the old count.
        let sts = broker_statefulset(&small(), &defaults(), 5);
        assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(5));
    }

    #[test]
    fn images_come_from_version_or_an_explicit_override() {
        let mut c = small();
        assert_eq!(
            image(&c, &defaults(), Role::Broker),
            "reg/weir/broker:0.1.0"
        );
        c.spec.version = Some("0.2.0".into());
        assert_eq!(
            image(&c, &defaults(), Role::Coordinator),
            "reg/weir/coordinator:0.2.0"
        );
        c.spec.image = Some(crate::crd::ImageSpec {
            broker: Some("mine/broker@sha256:abc".into()),
            ..Default::default()
        });
        assert_eq!(
            image(&c, &defaults(), Role::Broker),
            "mine/broker@sha256:abc"
        );
        assert_eq!(
            image(&c, &defaults(), Role::Coordinator),
            "reg/weir/coordinator:0.2.0"
        );
    }

    #[test]
    fn settings_go_to_the_role_that_owns_them_and_a_change_rolls_the_pods() {
        let c = small();
        let b = settings(&c, Role::Broker);
        assert_eq!(
            b,
            BTreeMap::from([("WEIR_MIN_INSYNC_REPLICAS".to_string(), "2".to_string())])
        );
        let k = settings(&c, Role::Coordinator);
        assert_eq!(
            k,
            BTreeMap::from([("WEIR_DEFAULT_PARTITIONS".to_string(), "6".to_string())])
        );
        let before = config_hash(&c, Role::Broker);
        let mut changed = c.clone();
        changed
            .spec
            .config
            .insert("min.insync.replicas".into(), "1".into());
        assert_ne!(before, config_hash(&changed, Role::Broker));
        assert_eq!(
            config_hash(&c, Role::Coordinator),
            config_hash(&changed, Role::Coordinator)
        );
        let sts = broker_statefulset(&changed, &defaults(), 3);
        let ann = sts
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(
            ann[CONFIG_HASH_ANNOTATION],
            config_hash(&changed, Role::Broker)
        );
    }

    #[test]
    fn every_object_is_owned_by_the_cluster_as_its_controller() {
        let c = small();
        let metas = [
            config_map(&c, Role::Broker).metadata,
            headless_service(&c, Role::Broker).metadata,
            bootstrap_service(&c).metadata,
            coordinator_statefulset(&c, &defaults()).metadata,
            broker_statefulset(&c, &defaults(), 3).metadata,
            pod_disruption_budget(&c, Role::Coordinator).metadata,
        ];
        for m in metas {
            let o = &m.owner_references.unwrap()[0];
            assert_eq!(
                (o.kind.as_str(), o.uid.as_str(), o.controller),
                ("Cluster", "u-1", Some(true))
            );
            assert_eq!(
                m.labels.unwrap()["app.kubernetes.io/managed-by"],
                "weir-operator"
            );
        }
    }

    #[test]
    fn coordinator_budgets_keep_a_quorum() {
        for (replicas, max) in [(1, 1), (3, 1), (5, 2)] {
            let mut c = small();
            c.spec.coordinators.replicas = replicas;
            let pdb = pod_disruption_budget(&c, Role::Coordinator);
            assert_eq!(
                pdb.spec.unwrap().max_unavailable,
                Some(IntOrString::Int(max)),
                "{replicas}"
            );
        }
    }

    #[test]
    fn rack_awareness_reads_the_zone_label_and_spreads_pods() {
        let c = cluster(serde_json::json!({
            "brokers": { "replicas": 3, "storage": { "size": "10Gi" }, "rack": { "topologyKey": "topology.kubernetes.io/zone" } }
        }));
        let sts = broker_statefulset(&c, &defaults(), 3);
        let pod = sts.spec.unwrap().template.spec.unwrap();
        let rack = pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "WEIR_RACK")
            .unwrap();
        assert_eq!(
            rack.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['topology.kubernetes.io/zone']"
        );
        assert_eq!(
            pod.topology_spread_constraints.unwrap()[0].topology_key,
            "topology.kubernetes.io/zone"
        );
    }
}
