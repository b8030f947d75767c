//! `weir-operator`: reconciles Weir's custom resources into a running cluster.
//!
//! ```text
//! crd/          Cluster, Topic, ConsumerGroup (weir.dev/v1alpha1): the types crdgen writes as YAML
//! desired.rs    pure builders: Cluster in, StatefulSets, Services, ConfigMaps, PDBs out
//! plan.rs       pure replica moves: drain before scale-down, spread after scale-up
//! admin.rs      ClusterAdmin: the coordinators' Admin gRPC API behind a trait (views are the shared
//!               weir_coordinator_client::view)
//! group_reader.rs  GroupReader: consumer groups read over the Kafka protocol
//! controller/   the three reconcile loops, their Context and status conditions
//! metrics.rs    weir_operator_* metrics, /metrics, /livez, /readyz
//! ```
//!
//! [`run`] starts one controller per kind and namespace (or one per kind for all namespaces)
//! and the HTTP endpoint, until `shutdown` resolves.

pub mod admin;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod group_reader;
pub mod metrics;
pub mod plan;

use controller::{Context, Timing};
use crd::{Cluster, ConsumerGroup, Topic};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Everything the operator is started with.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Namespaces to watch; empty means every namespace.
    pub namespaces: Vec<String>,
    /// Where `/metrics`, `/livez` and `/readyz` are served.
    pub http_addr: SocketAddr,
    pub defaults: desired::Defaults,
    pub timing: Timing,
    pub coordinator_overrides: BTreeMap<String, Vec<String>>,
    pub bootstrap_overrides: BTreeMap<String, Vec<String>>,
    /// This operator's pod name, for events.
    pub instance: Option<String>,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the operator until `shutdown` resolves.
pub async fn run(
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let client = kube::Client::try_default()
        .await
        .map_err(RunError::Client)?;
    run_with_client(client, config, shutdown).await
}

/// [`run`] with a given client (tests point it at their own API server).
pub async fn run_with_client(
    client: kube::Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let metrics = Arc::new(metrics::Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| RunError::Http {
            addr: config.http_addr,
            source,
        })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let http = {
        let router = metrics::router(metrics.clone());
        let stop = stopped();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %weir_model::Chain(&e), "HTTP server failed");
            }
        })
    };
    let ctx = Arc::new(context(&client, &config, metrics.clone()));
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    tracing::info!(namespaces = ?config.namespaces, http = %config.http_addr, "weir-operator starting");
    let mut loops = Vec::new();
    let mut stores = Vec::new();
    for ns in scopes {
        let (l, s) = controllers(&client, ns.as_deref(), ctx.clone(), &stopped);
        loops.extend(l);
        stores.extend(s);
    }
    let ready_metrics = metrics.clone();
    tokio::spawn(async move {
        for s in stores {
            if let Err(e) = s.await {
                tracing::warn!(error = %weir_model::Chain(&e), "a controller stopped before its cache was filled");
                return;
            }
        }
        tracing::info!("caches synced; ready");
        ready_metrics.set_ready();
    });
    futures::future::join_all(loops).await;
    let _ = http.await;
    tracing::info!("weir-operator stopped");
    Ok(())
}

/// What every reconcile is given: clients, defaults, the event recorder and metrics.
fn context(
    client: &kube::Client,
    config: &OperatorConfig,
    metrics: Arc<metrics::Metrics>,
) -> Context {
    let reporter = Reporter {
        controller: "weir-operator".into(),
        instance: config.instance.clone(),
    };
    Context {
        client: client.clone(),
        defaults: config.defaults.clone(),
        admins: Arc::new(admin::GrpcAdminFactory::default()),
        groups: Arc::new(group_reader::KafkaGroupReader {
            request_timeout: std::time::Duration::from_secs(10),
        }),
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        timing: config.timing.clone(),
        coordinator_overrides: config.coordinator_overrides.clone(),
        bootstrap_overrides: config.bootstrap_overrides.clone(),
        seen: Default::default(),
    }
}

fn api<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

type Loop = futures::future::BoxFuture<'static, ()>;
type Synced =
    futures::future::BoxFuture<'static, Result<(), kube::runtime::reflector::store::WriterDropped>>;

/// The three controllers of one scope, and futures that resolve when their caches are filled.
fn controllers<F, Fut>(
    client: &kube::Client,
    ns: Option<&str>,
    ctx: Arc<Context>,
    stopped: &F,
) -> (Vec<Loop>, Vec<Synced>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + Sync + 'static,
{
    // Only objects the operator made: it never caches the namespace's other StatefulSets.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=weir-operator");
    let all = watcher::Config::default();

    let clusters = Controller::new(api::<Cluster>(client, ns), all.clone())
        .owns(api::<StatefulSet>(client, ns), owned.clone())
        .owns(api::<Service>(client, ns), owned.clone())
        .owns(api::<ConfigMap>(client, ns), owned.clone())
        .owns(api::<PodDisruptionBudget>(client, ns), owned)
        .graceful_shutdown_on(stopped());
    let topics =
        Controller::new(api::<Topic>(client, ns), all.clone()).graceful_shutdown_on(stopped());
    let groups =
        Controller::new(api::<ConsumerGroup>(client, ns), all).graceful_shutdown_on(stopped());
    let synced: Vec<Synced> = vec![
        Box::pin(synced(clusters.store())),
        Box::pin(synced(topics.store())),
        Box::pin(synced(groups.store())),
    ];

    let c1 = ctx.clone();
    let cluster_loop = clusters
        .run(
            |obj, ctx| {
                timed(
                    "cluster",
                    ctx.clone(),
                    controller::cluster::reconcile(obj, ctx),
                )
            },
            controller::cluster::error_policy,
            c1,
        )
        .for_each(|r| async move { log_result("cluster", r) });
    let c2 = ctx.clone();
    let topic_loop = topics
        .run(
            |obj, ctx| timed("topic", ctx.clone(), controller::topic::reconcile(obj, ctx)),
            controller::topic::error_policy,
            c2,
        )
        .for_each(|r| async move { log_result("topic", r) });
    let group_loop = groups
        .run(
            |obj, ctx| {
                timed(
                    "consumergroup",
                    ctx.clone(),
                    controller::group::reconcile(obj, ctx),
                )
            },
            controller::group::error_policy,
            ctx,
        )
        .for_each(|r| async move { log_result("consumergroup", r) });
    (
        vec![
            Box::pin(cluster_loop),
            Box::pin(topic_loop),
            Box::pin(group_loop),
        ],
        synced,
    )
}

/// Resolves once `store` has its first full listing.
///
/// kube-runtime's readiness signal keeps only the last waiter's waker, and the controller
/// itself waits on the same store, so a single wait can sleep forever: re-poll every 200 ms.
async fn synced<K>(
    store: kube::runtime::reflector::Store<K>,
) -> Result<(), kube::runtime::reflector::store::WriterDropped>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(r) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            store.wait_until_ready(),
        )
        .await
        {
            return r;
        }
    }
}

async fn timed(
    name: &'static str,
    ctx: Arc<Context>,
    fut: impl Future<Output = Result<Action, controller::Error>>,
) -> Result<Action, controller::Error> {
    let start = Instant::now();
    let r = fut.await;
    ctx.metrics.reconciled(name, start.elapsed());
    r
}

fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(controller: &str, r: Result<T, E>) {
    match r {
        Ok(obj) => tracing::debug!(controller, object = ?obj, "reconciled"),
        Err(e) => tracing::debug!(controller, error = %e, "reconcile not run"),
    }
}
