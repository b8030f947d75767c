//! The operator's own metrics (`weir_operator_*`), and its HTTP endpoint: `/metrics`
//! (OpenMetrics text), `/livez` and `/readyz`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    kind: String,
}

/// Counters and timings of the reconcile loops.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabel, Histogram>,
    reassignments: Counter,
    /// Set once every controller has listed its resources.
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weir_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            // 1 ms to ~16 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let reassignments = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind of error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles took",
            duration.clone(),
        );
        registry.register(
            "reassignments",
            "Partition reassignments started to drain or spread brokers",
            reassignments.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            reassignments,
            ready: AtomicBool::new(false),
        }
    }

    pub fn reconciled(&self, controller: &str, took: Duration) {
        let l = ControllerLabel {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(took.as_secs_f64());
    }

    pub fn error(&self, controller: &str, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn reassignments(&self, n: u64) {
        self.reassignments.inc_by(n);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %weir_model::Chain(&e), "cannot encode metrics");
        }
        out
    }
}

/// The HTTP routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn serve_metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}
