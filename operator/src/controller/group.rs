//! Keeps a `ConsumerGroup`'s status current: state, members and lag, read from the brokers
//! every `Timing::group_refresh`.

use super::{Context, Error, namespace, set_condition};
use crate::crd::{Cluster, ConsumerGroup, ConsumerGroupStatus, condition};
use crate::group_reader::{GroupReadError, GroupSnapshot};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

pub async fn reconcile(group: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = namespace(&*group);
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = group.meta().generation;
    let mut st: ConsumerGroupStatus = group.status.clone().unwrap_or_default();
    st.observed_generation = generation;
    let id = group.group_id();
    match clusters.get_opt(&group.spec.cluster).await? {
        None => set_condition(
            &mut st.conditions,
            condition::READY,
            false,
            "ClusterNotFound",
            format!("no Cluster {:?} in namespace {ns}", group.spec.cluster),
            generation,
        ),
        Some(cluster) => {
            let bootstrap = ctx.bootstrap(&cluster);
            let read = ctx.groups.describe(&bootstrap, &id).await;
            apply_read(&mut st, read, &id, generation);
        }
    }
    // Write only a change: every status write is a watch event that reconciles again, so
    // rewriting `lastUpdated` alone would loop at once instead of every `group_refresh`.
    let unchanged = group.status.as_ref().is_some_and(|old| {
        let mut old = old.clone();
        old.last_updated = st.last_updated.clone();
        old == st
    });
    if unchanged {
        return Ok(Action::requeue(ctx.timing.group_refresh));
    }
    let api: Api<ConsumerGroup> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &group.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": st })),
    )
    .await?;
    Ok(Action::requeue(ctx.timing.group_refresh))
}

/// The status as the group's description (or its absence) says.
fn apply_read(
    st: &mut ConsumerGroupStatus,
    read: Result<GroupSnapshot, GroupReadError>,
    id: &str,
    generation: Option<i64>,
) {
    match read {
        Ok(snap) => {
            st.state = Some(snap.state.clone());
            st.members = i32::try_from(snap.members.len()).unwrap_or(i32::MAX);
            st.member_details = snap.members;
            st.total_lag = Some(snap.offsets.iter().filter_map(|p| p.lag).sum());
            st.offsets = snap.offsets;
            st.last_updated = Some(Timestamp::now().to_string());
            set_condition(
                &mut st.conditions,
                condition::READY,
                true,
                "Observed",
                format!("group {id:?} is {}", snap.state),
                generation,
            );
        }
        Err(GroupReadError::NotFound(_)) => {
            st.state = Some("NotFound".into());
            st.members = 0;
            st.member_details.clear();
            st.offsets.clear();
            st.total_lag = None;
            st.last_updated = Some(Timestamp::now().to_string());
            set_condition(
                &mut st.conditions,
                condition::READY,
                false,
                "GroupNotFound",
                format!("the cluster has no group {id:?} (no members, no committed offsets)"),
                generation,
            );
        }
        Err(GroupReadError::Unavailable(message)) => set_condition(
            &mut st.conditions,
            condition::READY,
            false,
            "ClusterUnavailable",
            message,
            generation,
        ),
    }
}

pub fn error_policy(group: Arc<ConsumerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(group = %group.name_any(), namespace = %namespace(&*group), error = %weir_model::Chain(&error), "consumer group reconcile failed");
    ctx.metrics.error("consumergroup", error.kind());
    Action::requeue(ctx.timing.retry)
}
