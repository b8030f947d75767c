//! Reconciles a `Cluster`: applies its objects, drains brokers before a scale-down, spreads
//! replicas after a scale-up, and reports status.
//!
//! ```text
//! apply ConfigMaps, Services, PDBs, coordinator StatefulSet        (server-side apply)
//! brokers: spec < current StatefulSet replicas?
//!     yes: moves off the leaving brokers (plan_drain) ──> keep current count until drained
//!     no:  apply spec count; once every broker is registered, spread replicas (plan_spread)
//! status: pods ready, under-replicated partitions, conditions
//! ```

use super::{Context, Error, FIELD_MANAGER, namespace, set_condition};
use crate::admin::{ClusterAdmin, ClusterView};
use crate::crd::{Cluster, ClusterStatus, condition};
use crate::desired::{self, Names, Role};
use crate::plan;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use weir_model::BrokerId;

use weir_model::limits::SPREAD_MOVES_MAX;

use weir_model::limits::DRAIN_MOVES_MAX;

/// Annotation recording the broker count replicas were last spread over, so a spread runs once
/// per scale-up and never fights replicas placed by hand afterwards.
pub const SPREAD_ANNOTATION: &str = "weir.dev/spread-brokers";

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(obj)).await?)
}

/// What the broker step decided.
#[derive(Debug, Default)]
struct BrokerOutcome {
    /// The StatefulSet's replicas as applied.
    replicas: i32,
    /// Brokers being drained before the scale-down.
    draining: Vec<i32>,
    /// A problem that stops progress, for the Degraded condition.
    blocked: Option<(String, String)>,
    /// Replicas are moving (drain or spread).
    moving: bool,
    view: Option<ClusterView>,
}

pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = namespace(&*cluster);
    let names = Names::of(&cluster);
    let client = ctx.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);

    for role in [Role::Coordinator, Role::Broker] {
        apply(&cms, &desired::config_map(&cluster, role)).await?;
        apply(&svcs, &desired::headless_service(&cluster, role)).await?;
        apply(&pdbs, &desired::pod_disruption_budget(&cluster, role)).await?;
    }
    apply(&svcs, &desired::bootstrap_service(&cluster)).await?;
    let coordinators = apply(
        &stss,
        &desired::coordinator_statefulset(&cluster, &ctx.defaults),
    )
    .await?;

    let current = stss
        .get_opt(&names.role(Role::Broker))
        .await?
        .and_then(|s| s.spec.and_then(|s| s.replicas));
    let admin = ctx.admin(&cluster);
    let outcome = brokers(&cluster, &ctx, admin.as_ref(), current).await;
    let brokers = apply(
        &stss,
        &desired::broker_statefulset(&cluster, &ctx.defaults, outcome.replicas),
    )
    .await?;

    let status = status(&cluster, &ctx, &coordinators, &brokers, &outcome);
    let busy = outcome.moving || !crate::crd::condition_true(&status.conditions, condition::READY);
    let clusters: Api<Cluster> = Api::namespaced(client, &ns);
    clusters
        .patch_status(
            &cluster.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    Ok(Action::requeue(if busy {
        ctx.timing.cluster_busy
    } else {
        ctx.timing.cluster_resync
    }))
}

/// Decides the broker StatefulSet's replicas, and starts drain or spread moves.
async fn brokers(
    cluster: &Cluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    current: Option<i32>,
) -> BrokerOutcome {
    let wanted = cluster.spec.brokers.replicas;
    let mut out = BrokerOutcome {
        replicas: wanted,
        ..BrokerOutcome::default()
    };
    let view = match admin.describe().await {
        Ok(v) => match ctx.check_fresh(cluster, &v) {
            Ok(()) => Some(v),
            Err(why) => {
                out.blocked = Some(("StaleMetadata".into(), why));
                None
            }
        },
        Err(e) => {
            out.blocked = Some(("CoordinatorsUnavailable".into(), e.to_string()));
            None
        }
    };
    match current {
        Some(current) if wanted < current => {
            scale_down(cluster, ctx, admin, view, current, &mut out).await
        }
        _ => {
            let Some(view) = view else {
                return out;
            };
            rebalance(cluster, ctx, admin, &view, &mut out).await;
            out.view = Some(view);
        }
    }
    out
}

/// Scaling down: keeps the leaving brokers until they hold no replica, moving their replicas
/// in waves meanwhile.
async fn scale_down(
    cluster: &Cluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    view: Option<ClusterView>,
    current: i32,
    out: &mut BrokerOutcome,
) {
    let wanted = cluster.spec.brokers.replicas;
    // Never remove a broker that holds a replica: keep the count until drained.
    out.replicas = current;
    let Some(view) = view else {
        return;
    };
    let staying = broker_ids(0..wanted);
    let leaving = broker_ids(wanted..current);
    out.draining = leaving.iter().map(|b| b.get()).collect();
    if plan::drained(&view, &leaving) {
        tracing::info!(cluster = %cluster.name_any(), from = current, to = wanted, "brokers drained; scaling down");
        ctx.event(
            cluster,
            false,
            "ScaledDown",
            "Drain",
            format!(
                "brokers {} hold no replica; scaling from {current} to {wanted}",
                list(&leaving)
            ),
        )
        .await;
        out.replicas = wanted;
        out.draining.clear();
    } else {
        out.moving = true;
        match plan::plan_drain(&view, &staying, &leaving) {
            Ok(moves) => {
                let in_flight = match admin.reassignments_in_progress().await {
                    Ok(n) => n,
                    Err(e) => {
                        out.blocked = Some(("CoordinatorsUnavailable".into(), e.to_string()));
                        DRAIN_MOVES_MAX
                    }
                };
                let room = DRAIN_MOVES_MAX.saturating_sub(in_flight);
                let wave = &moves[..moves.len().min(room)];
                start_moves(cluster, ctx, admin, wave, "Draining").await;
            }
            Err(e) => out.blocked = Some(("DrainBlocked".into(), e.to_string())),
        }
    }
    out.view = Some(view);
}

/// Steady state: replicas left on brokers no pod runs are moved; otherwise partitions are
/// spread over the brokers.
async fn rebalance(
    cluster: &Cluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    view: &ClusterView,
    out: &mut BrokerOutcome,
) {
    let wanted = cluster.spec.brokers.replicas;
    // Replicas on brokers the StatefulSet no longer runs (placed on a leaving broker
    // while it drained, or left by a scale-down made by hand): move them too.
    let staying = broker_ids(0..wanted);
    let orphans: BTreeSet<BrokerId> = view
        .partitions()
        .flat_map(|(_, p)| p.replicas.iter().copied())
        .filter(|r| !staying.contains(r))
        .collect();
    if !orphans.is_empty() {
        out.moving = true;
        match plan::plan_drain(view, &staying, &orphans) {
            Ok(moves) => {
                let wave = &moves[..moves.len().min(DRAIN_MOVES_MAX)];
                start_moves(cluster, ctx, admin, wave, "Draining").await;
                out.blocked = Some((
                    "ReplicasOnRemovedBrokers".into(),
                    format!(
                        "moving replicas off brokers {}, which no pod runs",
                        list(&orphans)
                    ),
                ));
            }
            Err(e) => out.blocked = Some(("ReplicasOnRemovedBrokers".into(), e.to_string())),
        }
    } else {
        spread(cluster, ctx, admin, view, out).await;
    }
}

/// After a scale-up, once every broker has registered, moves replicas onto the new brokers.
async fn spread(
    cluster: &Cluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    view: &ClusterView,
    out: &mut BrokerOutcome,
) {
    let wanted = cluster.spec.brokers.replicas;
    let done = cluster
        .annotations()
        .get(SPREAD_ANNOTATION)
        .and_then(|v| v.parse::<i32>().ok());
    if done == Some(wanted) {
        return;
    }
    let brokers = broker_ids(0..wanted);
    let registered = brokers
        .iter()
        .all(|id| view.brokers.get(id).is_some_and(|b| !b.fenced));
    if !registered {
        out.moving = true;
        return;
    }
    if done.is_none() && view.partitions().next().is_none() {
        // A new cluster has nothing to spread.
        mark_spread(cluster, ctx, wanted).await;
        return;
    }
    match admin.reassignments_in_progress().await {
        Ok(0) => {}
        Ok(_) => {
            out.moving = true;
            return;
        }
        Err(e) => {
            out.blocked = Some(("CoordinatorsUnavailable".into(), e.to_string()));
            return;
        }
    }
    let moves = plan::plan_spread(view, &brokers, SPREAD_MOVES_MAX);
    if moves.is_empty() {
        mark_spread(cluster, ctx, wanted).await;
    } else {
        out.moving = true;
        start_moves(cluster, ctx, admin, &moves, "Spreading").await;
    }
}

/// Records that replicas are spread over `brokers` brokers. An annotation, not spec or status:
/// status can be lost (a restore) and must be reconstructible, while this records a decision.
async fn mark_spread(cluster: &Cluster, ctx: &Context, brokers: i32) {
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace(cluster));
    let patch = serde_json::json!({
        "metadata": { "annotations": { SPREAD_ANNOTATION: brokers.to_string() } }
    });
    if let Err(e) = api
        .patch(
            &cluster.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        tracing::warn!(cluster = %cluster.name_any(), error = %weir_model::Chain(&e), "cannot record the spread");
    }
}

async fn start_moves(
    cluster: &Cluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    moves: &[plan::Move],
    reason: &str,
) {
    let mut started = 0;
    for m in moves {
        match admin
            .reassign(&m.topic, m.partition, m.replicas.clone())
            .await
        {
            Ok(()) => started += 1,
            Err(e) => {
                tracing::warn!(cluster = %cluster.name_any(), topic = %m.topic, partition = m.partition.get(), error = %weir_model::Chain(&e), "reassignment refused");
            }
        }
    }
    if started > 0 {
        ctx.metrics.reassignments(started);
        ctx.event(
            cluster,
            false,
            reason,
            "Reassign",
            format!("moving {started} partition(s) between brokers"),
        )
        .await;
    }
}

fn ready(sts: &StatefulSet) -> (i32, i32, bool) {
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let st = sts.status.as_ref();
    let ready = st.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = st.and_then(|s| s.updated_replicas).unwrap_or(0);
    let observed = st.and_then(|s| s.observed_generation) == sts.metadata.generation;
    let rolled = observed && updated >= want && ready >= want;
    (want, ready, rolled)
}

fn status(
    cluster: &Cluster,
    ctx: &Context,
    coordinators: &StatefulSet,
    brokers: &StatefulSet,
    outcome: &BrokerOutcome,
) -> ClusterStatus {
    let generation = cluster.metadata.generation;
    let mut st = cluster.status.clone().unwrap_or_default();
    let (_, coordinators_ready, coordinators_rolled) = ready(coordinators);
    let (_, brokers_ready, brokers_rolled) = ready(brokers);
    let wanted = cluster.spec.brokers.replicas;
    st.observed_generation = generation;
    st.bootstrap = ctx.bootstrap(cluster).first().cloned();
    st.brokers_ready = brokers_ready;
    st.coordinators_ready = coordinators_ready;
    st.draining_brokers = outcome.draining.clone();
    st.under_replicated_partitions = outcome
        .view
        .as_ref()
        .map(|v| i32::try_from(v.under_replicated()).unwrap_or(i32::MAX));

    let all_ready = coordinators_rolled
        && brokers_rolled
        && brokers_ready >= wanted
        && outcome.draining.is_empty();
    let (reason, message) = ready_reason(
        cluster,
        outcome,
        all_ready,
        brokers_ready,
        coordinators_ready,
    );
    set_condition(
        &mut st.conditions,
        condition::READY,
        all_ready,
        reason,
        message,
        generation,
    );
    let progressing = !all_ready || outcome.moving;
    set_condition(
        &mut st.conditions,
        condition::PROGRESSING,
        progressing,
        if outcome.moving {
            "MovingReplicas"
        } else if progressing {
            "RollingOut"
        } else {
            "Stable"
        },
        if progressing {
            "pods or replicas are changing"
        } else {
            "nothing is changing"
        },
        generation,
    );
    let under = st.under_replicated_partitions.unwrap_or(0);
    let (degraded, reason, message) = match &outcome.blocked {
        Some((r, m)) => (true, r.clone(), m.clone()),
        None if under > 0 => (
            true,
            "UnderReplicated".to_string(),
            format!("{under} partition(s) have fewer in-sync replicas than replicas"),
        ),
        None => (false, "Healthy".to_string(), "no problem seen".to_string()),
    };
    set_condition(
        &mut st.conditions,
        condition::DEGRADED,
        degraded,
        &reason,
        message,
        generation,
    );
    st
}

/// The Ready condition's reason and message.
fn ready_reason(
    cluster: &Cluster,
    outcome: &BrokerOutcome,
    all_ready: bool,
    brokers_ready: i32,
    coordinators_ready: i32,
) -> (&'static str, String) {
    let wanted = cluster.spec.brokers.replicas;
    if all_ready {
        (
            "Ready",
            format!("{brokers_ready} brokers and {coordinators_ready} coordinators ready"),
        )
    } else if !outcome.draining.is_empty() {
        (
            "Draining",
            format!(
                "moving replicas off brokers {:?} before scaling down to {wanted}",
                outcome.draining
            ),
        )
    } else {
        (
            "PodsNotReady",
            format!(
                "{brokers_ready}/{wanted} brokers and {coordinators_ready}/{} coordinators ready",
                cluster.spec.coordinators.replicas
            ),
        )
    }
}

/// Logs a failed reconcile and retries it later.
pub fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), namespace = %namespace(&*cluster), error = %weir_model::Chain(&error), "cluster reconcile failed");
    ctx.metrics.error("cluster", error.kind());
    Action::requeue(ctx.timing.retry)
}

/// The brokers of StatefulSet ordinals `ordinals` (a broker's id is its pod's ordinal).
fn broker_ids(ordinals: std::ops::Range<i32>) -> BTreeSet<BrokerId> {
    ordinals.map(BrokerId).collect()
}

/// `[0, 3]`: broker ids for messages.
fn list(brokers: &BTreeSet<BrokerId>) -> String {
    let ids: Vec<i32> = brokers.iter().map(|b| b.get()).collect();
    format!("{ids:?}")
}
