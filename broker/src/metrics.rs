//! The Prometheus endpoint: `GET /metrics` on `--metrics-addr`.
//!
//! Everything is computed when scraped, from the state the broker already keeps, so there is
//! no second copy of it to keep in step:
//! - partitions this broker leads: high watermark, log start and end, ISR size, whether
//!   under-replicated;
//! - groups this broker coordinates: state, generation, members, and per partition the
//!   committed offset and the lag (high watermark minus committed offset). High watermarks of
//!   partitions led elsewhere come from their leaders (`Replication.Watermarks`), so lag is
//!   reported for every committed partition, not only those hosted here.
//!
//! The text exposition format is written directly: it is a stable, line-based format, and the
//! values are a snapshot per scrape rather than instruments updated on the hot path, which is
//! what client libraries are for.

use crate::groups::{Coordinator, GroupSnapshot};
use crate::partition::Role;
use crate::services::Services;
use crate::state::BrokerState;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::Duration;
use tokio::net::TcpListener;
use weir_model::{BrokerId, TopicId};
use weir_proto::v1;

/// How long a scrape waits for another broker's high watermarks.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `/metrics`, `/livez` and `/readyz` until the task is aborted.
pub async fn serve(svc: Services, listener: TcpListener) {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(svc): axum::extract::State<Services>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render(&svc.state, &svc.groups).await,
                    )
                },
            ),
        )
        // Kubernetes probes: alive while this server answers; ready when `readiness` says so.
        .route("/livez", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(
                |axum::extract::State(svc): axum::extract::State<Services>| async move {
                    let state = &svc.state;
                    let ready = match state.log_dir.offline_reason() {
                        Some(reason) => Err(format!("log directory offline: {reason}")),
                        None => crate::cluster::readiness(&state.view(), state.me),
                    };
                    match ready {
                        Ok(()) => (axum::http::StatusCode::OK, "ok".to_string()),
                        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, why),
                    }
                },
            ),
        )
        .with_state(svc);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %weir_model::Chain(&e), "metrics server stopped");
    }
}

/// The whole exposition, as text.
pub async fn render(state: &BrokerState, coordinator: &Coordinator) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let view = state.view();
    let me = state.me.get().to_string();
    metric(
        &mut out,
        "weir_broker_info",
        "gauge",
        "This broker (value 1).",
        &[(
            vec![
                ("broker", me.clone()),
                ("cluster_id", view.cluster_id.clone()),
            ],
            1,
        )],
    );

    let counts = &state.auth_counts;
    metric(
        &mut out,
        "weir_broker_sasl_authentications_total",
        "counter",
        "SASL authentications on the Kafka listeners, by result.",
        &[
            (
                vec![("result", "succeeded".to_string())],
                counts.succeeded.load(std::sync::atomic::Ordering::Relaxed) as i64,
            ),
            (
                vec![("result", "failed".to_string())],
                counts.failed.load(std::sync::atomic::Ordering::Relaxed) as i64,
            ),
        ],
    );
    let hw_local = render_partitions(&mut out, state);
    let groups = coordinator.snapshot().await;
    let hw_all = group_watermarks(state, &view, &groups, hw_local).await;
    render_groups(&mut out, &groups, &hw_all);
    out
}

/// A partition's high watermark by (topic, partition).
type Watermarks = HashMap<(String, i32), i64>;

/// The partitions led here; returns their high watermarks.
fn render_partitions(out: &mut String, state: &BrokerState) -> Watermarks {
    let mut hw_local: Watermarks = HashMap::new();
    let mut hws = Vec::new();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let mut isr = Vec::new();
    let mut under = Vec::new();
    let mut locals = state.local_partitions();
    locals.sort_by(|a, b| (a.topic.as_str(), a.id).cmp(&(b.topic.as_str(), b.id)));
    for p in locals {
        let (isr_len, replicas) = {
            let r = p.replica();
            match &r.role {
                Role::Leader(l) => (l.isr().len(), l.replicas().len()),
                Role::Follower { .. } => continue,
            }
        };
        let (start, end) = {
            let log = p.log.read().unwrap_or_else(|e| e.into_inner());
            (log.log_start_offset().get(), log.log_end_offset().get())
        };
        let hw = p.high_watermark().get();
        hw_local.insert((p.topic.to_string(), p.id.get()), hw);
        let labels = vec![
            ("topic", p.topic.to_string()),
            ("partition", p.id.get().to_string()),
        ];
        hws.push((labels.clone(), hw));
        starts.push((labels.clone(), start));
        ends.push((labels.clone(), end));
        isr.push((labels.clone(), isr_len as i64));
        under.push((labels, i64::from(isr_len < replicas)));
    }
    for (name, help, samples) in [
        (
            "weir_partition_high_watermark",
            "High watermark of a partition led by this broker.",
            &hws,
        ),
        (
            "weir_partition_log_start_offset",
            "First offset of a partition led by this broker.",
            &starts,
        ),
        (
            "weir_partition_log_end_offset",
            "Log end offset of a partition led by this broker.",
            &ends,
        ),
        (
            "weir_partition_isr_size",
            "In-sync replicas of a partition led by this broker.",
            &isr,
        ),
        (
            "weir_partition_under_replicated",
            "1 when a partition led by this broker has fewer in-sync replicas than replicas.",
            &under,
        ),
    ] {
        metric(out, name, "gauge", help, samples);
    }
    hw_local
}

/// The high watermarks of every partition the groups coordinated here have offsets for: those
/// led here, and the others asked of their leaders.
async fn group_watermarks(
    state: &BrokerState,
    view: &crate::cluster::ClusterView,
    groups: &[GroupSnapshot],
    hw_local: Watermarks,
) -> Watermarks {
    let mut wanted: BTreeMap<BrokerId, Vec<(TopicId, String, i32)>> = BTreeMap::new();
    for g in groups {
        for (t, p, _) in &g.offsets {
            if hw_local.contains_key(&(t.clone(), *p)) {
                continue;
            }
            if let Some(info) = view.topic(t)
                && let Some(leader) = info
                    .partition(weir_model::PartitionId(*p))
                    .and_then(|pi| pi.leader)
            {
                wanted
                    .entry(leader)
                    .or_default()
                    .push((info.id, t.clone(), *p));
            }
        }
    }
    let mut hw_all = hw_local;
    for (leader, parts) in wanted {
        for ((t, p), hw) in remote_watermarks(state, leader, parts).await {
            hw_all.insert((t, p), hw);
        }
    }
    hw_all
}

/// The groups coordinated here: members, generation, state, committed offsets and lag.
fn render_groups(out: &mut String, groups: &[GroupSnapshot], hw_all: &Watermarks) {
    let mut members = Vec::new();
    let mut generation = Vec::new();
    let mut states = Vec::new();
    let mut committed = Vec::new();
    let mut lag = Vec::new();
    let mut lag_sum = Vec::new();
    let mut lag_max = Vec::new();
    for g in groups {
        let gl = vec![("group", g.id.clone())];
        members.push((gl.clone(), g.members as i64));
        generation.push((gl.clone(), i64::from(g.generation)));
        states.push((
            vec![("group", g.id.clone()), ("state", g.state.to_string())],
            1,
        ));
        let (mut sum, mut max, mut any) = (0i64, 0i64, false);
        for (t, p, offset) in &g.offsets {
            let labels = vec![
                ("group", g.id.clone()),
                ("topic", t.clone()),
                ("partition", p.to_string()),
            ];
            committed.push((labels.clone(), *offset));
            if let Some(hw) = hw_all.get(&(t.clone(), *p)) {
                // A commit can be ahead of a watermark read a moment earlier: no negative lag.
                let l = (hw - offset).max(0);
                lag.push((labels, l));
                sum += l;
                max = max.max(l);
                any = true;
            }
        }
        if any {
            lag_sum.push((gl.clone(), sum));
            lag_max.push((gl, max));
        }
    }
    for (name, help, samples) in [
        (
            "weir_group_members",
            "Members of a consumer group coordinated by this broker.",
            &members,
        ),
        (
            "weir_group_generation",
            "Generation of a consumer group.",
            &generation,
        ),
        (
            "weir_group_state",
            "1 for the state a consumer group is in.",
            &states,
        ),
        (
            "weir_group_committed_offset",
            "Committed offset of a group for a partition.",
            &committed,
        ),
        (
            "weir_group_lag",
            "High watermark minus committed offset, per group and partition.",
            &lag,
        ),
        (
            "weir_group_lag_sum",
            "Lag of a group summed over its partitions.",
            &lag_sum,
        ),
        (
            "weir_group_lag_max",
            "Largest lag of a group over its partitions.",
            &lag_max,
        ),
    ] {
        metric(out, name, "gauge", help, samples);
    }
}

/// High watermarks from another broker; partitions it does not answer for are left out (their
/// lag is not reported this scrape rather than reported wrong).
async fn remote_watermarks(
    state: &BrokerState,
    leader: BrokerId,
    parts: Vec<(TopicId, String, i32)>,
) -> Vec<((String, i32), i64)> {
    let Some(addr) = state
        .view()
        .brokers
        .get(&leader)
        .map(|b| b.internal_addr.clone())
    else {
        return Vec::new();
    };
    let call = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect_timeout(REMOTE_TIMEOUT)
            .timeout(REMOTE_TIMEOUT)
            .connect()
            .await
            .ok()?;
        let mut client = v1::replication_client::ReplicationClient::new(channel);
        let req = v1::WatermarksRequest {
            partitions: parts
                .iter()
                .take(weir_model::limits::WATERMARKS_MAX)
                .map(|(id, _, p)| v1::WatermarkPartition {
                    topic_id: id.to_uuid_string(),
                    partition: *p,
                })
                .collect(),
        };
        client.watermarks(req).await.ok().map(|r| r.into_inner())
    };
    let Ok(Some(resp)) = tokio::time::timeout(REMOTE_TIMEOUT * 2, call).await else {
        tracing::debug!(broker = leader.get(), "no watermarks for lag metrics");
        return Vec::new();
    };
    let names: HashMap<(String, i32), String> = parts
        .into_iter()
        .map(|(id, t, p)| ((id.to_uuid_string(), p), t))
        .collect();
    resp.partitions
        .into_iter()
        .filter(|w| w.error_code == 0)
        .filter_map(|w| {
            names
                .get(&(w.topic_id.clone(), w.partition))
                .zip(w.high_watermark)
                .map(|(t, hw)| ((t.clone(), w.partition), hw))
        })
        .collect()
}

type Sample = (Vec<(&'static str, String)>, i64);

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[Sample]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline (the exposition format's rule).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves: samples are written in the exposition format, with label values escaped.
    #[test]
    fn exposition_format_and_escaping() {
        let mut out = String::new();
        metric(
            &mut out,
            "weir_group_lag",
            "gauge",
            "Lag.",
            &[(
                vec![
                    ("group", "a\"b\\c\nd".to_string()),
                    ("partition", "3".into()),
                ],
                42,
            )],
        );
        assert_eq!(
            out,
            "# HELP weir_group_lag Lag.\n# TYPE weir_group_lag gauge\nweir_group_lag{group=\"a\\\"b\\\\c\\nd\",partition=\"3\"} 42\n"
        );
    }
}
