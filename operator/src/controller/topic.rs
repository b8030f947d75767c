//! Reconciles a `Topic` with the topic in its cluster.
//!
//! ```text
//! finalizer added ─> Apply:   cluster? ─ conflict? ─ describe ─┬ missing  ─> CreateTopic
//!                                                              ├ fewer partitions ─> CreatePartitions
//!                                                              └ configs differ ─> AlterConfigs(replace)
//! deleted ────────> Cleanup: Retain, cluster gone, or not ours ─> release
//!                            Delete ─> DeleteTopic ─> release
//! ```
//!
//! Two `Topic` resources naming one topic of one cluster: the older (by creation time, then
//! name) manages it; the other reports `Conflict` and changes nothing, so they never fight.

use super::{Context, Error, namespace, set_condition};
use crate::admin::{AdminError, ClusterAdmin, NewTopic, TopicView, code};
use crate::crd::{
    ADOPT_ANNOTATION, Cluster, DeletionPolicy, TOPIC_FINALIZER, Topic, TopicStatus, condition,
};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace(&*topic));
    finalizer(&api, TOPIC_FINALIZER, topic, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The `Topic` that manages `topic`'s Weir topic, if not `topic` itself.
async fn conflicting_owner(topic: &Topic, ctx: &Context) -> Result<Option<String>, Error> {
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace(topic));
    let name = topic.topic_name();
    let key = |t: &Topic| {
        (
            t.metadata.creation_timestamp.clone().map(|t| t.0),
            t.name_any(),
        )
    };
    let owner = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|t| t.spec.cluster == topic.spec.cluster && t.topic_name() == name)
        .min_by_key(key);
    Ok(owner
        .filter(|o| o.uid() != topic.uid())
        .map(|o| o.name_any()))
}

/// Another `Topic` not being deleted that names the same topic of the same cluster.
async fn other_claimant(topic: &Topic, ctx: &Context) -> Result<Option<String>, Error> {
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace(topic));
    let name = topic.topic_name();
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|t| {
            t.uid() != topic.uid()
                && t.meta().deletion_timestamp.is_none()
                && t.spec.cluster == topic.spec.cluster
                && t.topic_name() == name
        })
        .map(|t| t.name_any()))
}

struct Outcome {
    ready: bool,
    reason: &'static str,
    message: String,
    view: Option<TopicView>,
}

async fn apply(topic: &Topic, ctx: &Context) -> Result<Action, Error> {
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace(topic));
    let name = topic.topic_name();
    let outcome = match clusters.get_opt(&topic.spec.cluster).await? {
        None => Outcome {
            ready: false,
            reason: "ClusterNotFound",
            message: format!(
                "no Cluster {:?} in namespace {}",
                topic.spec.cluster,
                namespace(topic)
            ),
            view: None,
        },
        Some(cluster) => match conflicting_owner(topic, ctx).await? {
            Some(owner) => Outcome {
                ready: false,
                reason: "Conflict",
                message: format!(
                    "topic {name:?} of cluster {:?} is managed by Topic {owner:?}; this resource changes nothing",
                    topic.spec.cluster
                ),
                view: None,
            },
            None => sync(topic, &cluster, ctx, &name).await?,
        },
    };
    if !outcome.ready {
        tracing::info!(topic = %name, reason = outcome.reason, message = %outcome.message, "topic not ready");
    }
    write_status(topic, ctx, &name, outcome).await?;
    Ok(Action::requeue(ctx.timing.topic_resync))
}

/// Brings the Weir topic to the resource.
async fn sync(
    topic: &Topic,
    cluster: &Cluster,
    ctx: &Context,
    name: &str,
) -> Result<Outcome, Error> {
    if let Some(invalid) = invalid_name(name) {
        return Ok(invalid);
    }
    let admin = ctx.admin(cluster);
    let view = match admin.describe().await {
        Ok(v) => v,
        Err(e) => return Ok(unavailable(e)),
    };
    let spec = &topic.spec;
    let configs = normalized(&spec.config);
    let Some(existing) = view.topic(name).cloned() else {
        return Ok(create(topic, ctx, admin.as_ref(), name, configs).await);
    };
    if let Some(refused) = not_managed(topic, name) {
        return Ok(refused);
    }
    let have = i32::try_from(existing.partitions.len()).unwrap_or(i32::MAX);
    if have > spec.partitions {
        return Ok(Outcome {
            ready: false,
            reason: "PartitionsDecrease",
            message: format!(
                "topic {name:?} has {have} partitions and partitions cannot be removed; set spec.partitions to at least {have}"
            ),
            view: Some(existing),
        });
    }
    let mut changed = Vec::new();
    if have < spec.partitions {
        match admin.create_partitions(name, spec.partitions).await {
            Ok(()) => changed.push(format!("partitions {have} -> {}", spec.partitions)),
            Err(e) => return Ok(refused(topic, ctx, e, "CreatePartitions").await),
        }
    }
    if existing.configs != configs {
        match admin.replace_configs(name, configs.clone()).await {
            Ok(()) => changed.push(format!("configs {:?} -> {:?}", existing.configs, configs)),
            Err(e) => return Ok(refused(topic, ctx, e, "AlterConfigs").await),
        }
    }
    if changed.is_empty() {
        return Ok(Outcome {
            ready: true,
            reason: "InSync",
            message: format!("topic {name:?} matches the resource"),
            view: Some(existing),
        });
    }
    let note = format!("topic {name:?}: {}", changed.join("; "));
    ctx.event(topic, false, "Updated", "AlterTopic", note.clone())
        .await;
    let view = admin
        .describe()
        .await
        .ok()
        .and_then(|v| v.topic(name).cloned());
    Ok(Outcome {
        ready: true,
        reason: "Updated",
        message: note,
        view: view.or(Some(existing)),
    })
}

/// The cluster could not be asked.
fn unavailable(e: AdminError) -> Outcome {
    Outcome {
        ready: false,
        reason: "ClusterUnavailable",
        message: e.to_string(),
        view: None,
    }
}

/// A name the resource may not manage: an internal topic, or not a topic name at all.
fn invalid_name(name: &str) -> Option<Outcome> {
    if name.starts_with("__") {
        return Some(Outcome {
            ready: false,
            reason: "Invalid",
            message: format!(
                "{name:?} is an internal topic of the cluster; it is not managed by resources"
            ),
            view: None,
        });
    }
    if let Err(e) = weir_model::TopicName::new(name) {
        return Some(Outcome {
            ready: false,
            reason: "Invalid",
            message: format!("{e}; set spec.topicName"),
            view: None,
        });
    }
    None
}

/// Creates the topic the resource describes.
async fn create(
    topic: &Topic,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Outcome {
    let spec = &topic.spec;
    let created = admin
        .create_topic(NewTopic {
            name: name.to_string(),
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            configs,
        })
        .await;
    match created {
        Ok(t) => {
            let recreated = topic.status.as_ref().and_then(|s| s.topic_id.clone());
            let note = match recreated {
                Some(old) => format!(
                    "created topic {name:?} again (id {}; the old one, {old}, was deleted outside this resource)",
                    t.as_ref()
                        .map_or("unknown".to_string(), |t| t.id.to_uuid_string())
                ),
                None => format!(
                    "created topic {name:?} with {} partitions, replication factor {}",
                    spec.partitions, spec.replication_factor
                ),
            };
            ctx.event(topic, false, "Created", "CreateTopic", note)
                .await;
            Outcome {
                ready: true,
                reason: "Created",
                message: format!("topic {name:?} created"),
                view: t,
            }
        }
        Err(e @ AdminError::Refused { .. }) if e.code() != Some(code::TOPIC_ALREADY_EXISTS) => {
            ctx.event(topic, true, "Invalid", "CreateTopic", e.to_string())
                .await;
            Outcome {
                ready: false,
                reason: "Invalid",
                message: e.to_string(),
                view: None,
            }
        }
        Err(e) => unavailable(e),
    }
}

/// A topic this resource did not create (or take over before) is managed only with the
/// annotation.
fn not_managed(topic: &Topic, name: &str) -> Option<Outcome> {
    let ours = topic
        .status
        .as_ref()
        .and_then(|s| s.topic_id.as_ref())
        .is_some();
    let adopt = topic
        .annotations()
        .get(ADOPT_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    if !ours && !adopt {
        return Some(Outcome {
            ready: false,
            reason: "AlreadyExists",
            message: format!(
                "topic {name:?} already exists in the cluster and this resource did not create it; annotate {ADOPT_ANNOTATION}=true to manage it (its configs become spec.config)"
            ),
            view: None,
        });
    }
    None
}

/// Config values as the cluster stores them (trimmed, numbers re-printed, `cleanup.policy`
/// in canonical order), so comparing with what the coordinators report converges. Values the
/// check refuses are kept as written; the coordinators refuse them with the reason.
fn normalized(config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .map(|(k, v)| {
            let v = weir_model::topic_config::validate(k, v).unwrap_or_else(|_| v.clone());
            (k.clone(), v)
        })
        .collect()
}

async fn refused(topic: &Topic, ctx: &Context, e: AdminError, action: &str) -> Outcome {
    let reason = match e {
        AdminError::Refused { .. } => "Invalid",
        AdminError::Unavailable { .. } => "ClusterUnavailable",
    };
    ctx.event(topic, true, reason, action, e.to_string()).await;
    Outcome {
        ready: false,
        reason,
        message: e.to_string(),
        view: None,
    }
}

async fn write_status(
    topic: &Topic,
    ctx: &Context,
    name: &str,
    outcome: Outcome,
) -> Result<(), Error> {
    let generation = topic.meta().generation;
    let mut st: TopicStatus = topic.status.clone().unwrap_or_default();
    st.observed_generation = generation;
    st.topic_name = Some(name.to_string());
    if let Some(v) = &outcome.view {
        st.topic_id = Some(v.id.to_uuid_string());
        st.partitions = Some(i32::try_from(v.partitions.len()).unwrap_or(i32::MAX));
    }
    set_condition(
        &mut st.conditions,
        condition::READY,
        outcome.ready,
        outcome.reason,
        outcome.message,
        generation,
    );
    if topic.status.as_ref() == Some(&st) {
        return Ok(());
    }
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace(topic));
    api.patch_status(
        &topic.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": st })),
    )
    .await?;
    Ok(())
}

async fn cleanup(topic: &Topic, ctx: &Context) -> Result<Action, Error> {
    let name = topic.topic_name();
    if topic.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            topic,
            false,
            "Retained",
            "DeleteTopic",
            format!("deletionPolicy Retain: topic {name:?} stays in the cluster"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace(topic));
    let cluster = match clusters.get_opt(&topic.spec.cluster).await? {
        // The cluster and its data are going or gone: nothing to delete, and waiting would hang
        // the namespace's deletion.
        Some(c) if c.meta().deletion_timestamp.is_none() => c,
        _ => {
            tracing::info!(topic = %name, "cluster gone; releasing the topic");
            return Ok(Action::await_change());
        }
    };
    if let Some(owner) = conflicting_owner(topic, ctx).await? {
        tracing::info!(topic = %name, owner = %owner, "not the managing resource; nothing to delete");
        return Ok(Action::await_change());
    }
    if let Some(other) = other_claimant(topic, ctx).await? {
        tracing::info!(topic = %name, other = %other, "another Topic still claims it; not deleting");
        return Ok(Action::await_change());
    }
    // Only the topic this resource created or adopted: not one made afresh by someone else
    // under the same name, and nothing if it never got that far.
    let Some(ours) = topic.status.as_ref().and_then(|s| s.topic_id.clone()) else {
        return Ok(Action::await_change());
    };
    let admin = ctx.admin(&cluster);
    match admin.describe().await?.topic(&name) {
        Some(t) if t.id.to_uuid_string() == ours => {}
        _ => {
            tracing::info!(topic = %name, "the topic in the cluster is not the one this resource managed; not deleting");
            return Ok(Action::await_change());
        }
    }
    match admin.delete_topic(&name).await {
        Ok(()) => {
            ctx.event(
                topic,
                false,
                "Deleted",
                "DeleteTopic",
                format!("deleted topic {name:?}"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) if e.code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

pub fn error_policy(topic: Arc<Topic>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(topic = %topic.name_any(), namespace = %namespace(&*topic), error = %weir_model::Chain(&error), "topic reconcile failed");
    ctx.metrics.error("topic", error.kind());
    Action::requeue(ctx.timing.retry)
}
