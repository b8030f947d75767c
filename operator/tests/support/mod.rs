//! Shared by the operator's control-plane tests: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager built from their Go modules by
//! `scripts/controlplane.sh`), the CRDs installed, a real Weir cluster as processes, and the
//! operator running in the test process against both.

#![allow(dead_code)]

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weir_operator::controller::Timing;
use weir_operator::desired::Defaults;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Why these tests cannot run here, or `None`. `WEIR_REQUIRE_CONTROLPLANE=1` (set by
/// scripts/test.sh) turns every reason into a failure, so CI never skips them silently.
pub fn unavailable_reason() -> Option<String> {
    let required = std::env::var_os("WEIR_REQUIRE_CONTROLPLANE").is_some();
    let reason = if let Some(r) = weir_e2e::cluster::unavailable_reason() {
        Some(r)
    } else {
        let bin = controlplane_bin();
        let missing: Vec<&str> = ["etcd", "kube-apiserver", "kube-controller-manager"]
            .into_iter()
            .filter(|b| !bin.join(b).exists())
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "{missing:?} not built in {} (run scripts/controlplane.sh build)",
                bin.display()
            )
        })
    };
    match reason {
        Some(r) if required => panic!("WEIR_REQUIRE_CONTROLPLANE is set but {r}"),
        r => r,
    }
}

fn controlplane_bin() -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/controlplane.sh"))
        .arg("bin")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        _ => PathBuf::from("/nonexistent"),
    }
}

/// A control plane on loopback; stopped when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    pub fn start() -> anyhow::Result<ControlPlane> {
        let dir = tempfile::Builder::new().prefix("weir-cp-").tempdir()?;
        let out = Command::new("bash")
            .arg(workspace_root().join("scripts/controlplane.sh"))
            .arg("start")
            .arg(dir.path())
            .output()
            .context("running scripts/controlplane.sh start")?;
        if !out.status.success() {
            bail!(
                "control plane did not start:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(ControlPlane {
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
        })
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Log of a control-plane process, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("scripts/controlplane.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// Installs the committed CRD YAML (what users apply) and waits until each is Established.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("crds"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("weir-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying {name}"))?;
        names.push(name);
    }
    for name in names {
        wait_for(
            Duration::from_secs(30),
            &format!("CRD {name} established"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let ok = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    ok.then_some(())
                }
            },
        )
        .await?;
    }
    Ok(())
}

pub async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name }
    }))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

/// Polls `cond` every 100 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operator's settings for tests: quick resyncs, and the test's Weir cluster reached at
/// its process addresses instead of in-cluster DNS names.
pub fn operator_config(
    http_port: u16,
    cluster_key: &str,
    coordinators: Vec<String>,
    bootstrap: Vec<String>,
) -> weir_operator::OperatorConfig {
    let s = Duration::from_secs;
    weir_operator::OperatorConfig {
        namespaces: Vec::new(),
        http_addr: format!("127.0.0.1:{http_port}").parse().expect("address"),
        defaults: Defaults {
            broker_repository: "localhost/weir/broker".into(),
            coordinator_repository: "localhost/weir/coordinator".into(),
            version: "0.1.0".into(),
        },
        timing: Timing {
            cluster_resync: s(2),
            cluster_busy: Duration::from_millis(500),
            topic_resync: s(1),
            group_refresh: s(1),
            retry: s(1),
        },
        coordinator_overrides: BTreeMap::from([(cluster_key.to_string(), coordinators)]),
        bootstrap_overrides: BTreeMap::from([(cluster_key.to_string(), bootstrap)]),
        instance: Some("test".into()),
    }
}

/// A `Cluster` resource as JSON.
pub fn cluster_json(name: &str, ns: &str, brokers: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "coordinators": { "replicas": 3, "storage": { "size": "1Gi" } },
            "brokers": { "replicas": brokers, "storage": { "size": "2Gi", "storageClassName": "fast" } },
            "config": { "min.insync.replicas": "2", "default.replication.factor": "2" }
        }
    })
}

/// The operator running in the test process.
#[derive(Debug)]
pub struct Operator {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), weir_operator::RunError>>,
}

impl Operator {
    /// Stops it and checks it ended cleanly.
    pub fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        rt.block_on(self.task)
            .expect("operator task")
            .expect("operator run");
    }
}

/// What every control-plane test starts with: a control plane with the CRDs and namespace
/// `ns`, a Weir cluster as processes (1 coordinator, brokers 0-2: the ids a StatefulSet's pod
/// ordinals give), and the operator reaching that cluster as `ns/demo`.
#[allow(missing_debug_implementations)] // kube::Client is not Debug
pub struct Harness {
    /// Dropped last: stops the control plane.
    pub cp: ControlPlane,
    pub weir: weir_e2e::cluster::TestCluster,
    pub rt: tokio::runtime::Runtime,
    pub client: kube::Client,
    /// The operator's `/metrics`, `/livez`, `/readyz`.
    pub http_port: u16,
    pub coordinators: Vec<String>,
    pub bootstrap: Vec<String>,
    pub operator: Operator,
}

impl Harness {
    pub fn start(ns: &str) -> Harness {
        let cp = ControlPlane::start().expect("control plane");
        let weir = weir_e2e::cluster::TestCluster::start(weir_e2e::cluster::ClusterConfig {
            coordinators: 1,
            brokers: 3,
            first_broker_id: 0,
            ..weir_e2e::cluster::ClusterConfig::default()
        })
        .expect("weir cluster");
        let coordinators = vec![weir.coordinator_addr(1)];
        let bootstrap: Vec<String> = weir
            .broker_ids()
            .iter()
            .map(|id| weir.kafka_addr(*id))
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http_port = weir_e2e::free_port();
        let client = rt.block_on(async {
            let client = cp.client().await.expect("client");
            install_crds(&client).await.expect("CRDs");
            create_namespace(&client, ns).await.expect("namespace");
            client
        });
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(weir_operator::run_with_client(
            client.clone(),
            operator_config(
                http_port,
                &format!("{ns}/demo"),
                coordinators.clone(),
                bootstrap.clone(),
            ),
            async move {
                let _ = stop_rx.await;
            },
        ));
        Harness {
            cp,
            weir,
            rt,
            client,
            http_port,
            coordinators,
            bootstrap,
            operator: Operator { stop, task },
        }
    }
}

/// A GET on the operator's HTTP endpoint (plain HTTP/1.0 over a TCP socket): the whole reply.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
