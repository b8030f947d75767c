//! The Topic and ConsumerGroup controllers against a real Kubernetes control plane and a real
//! Weir cluster (processes), and the gRPC `ClusterAdmin` against real coordinators.

use crate::support::*;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_operator::admin::{ClusterAdmin, GrpcAdmin, TopicView};
use weir_operator::crd::{Cluster, ConsumerGroup, Topic};

const NS: &str = "weir-topics";

fn topic_json(name: &str, spec: serde_json::Value) -> Topic {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Topic",
        "metadata": { "name": name, "namespace": NS },
        "spec": spec,
    }))
    .expect("topic")
}

async fn weir_topic(admin: &GrpcAdmin, name: &str) -> Option<TopicView> {
    admin.describe().await.ok()?.topic(name).cloned()
}

async fn ready_reason(api: &Api<Topic>, name: &str) -> Option<(String, String)> {
    let t = api.get(name).await.ok()?;
    let st = t.status?;
    if st.observed_generation != t.metadata.generation {
        return None;
    }
    let c = st.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

fn produce(bootstrap: &str, topic: &str, n: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..n {
        let v = format!("v{i}");
        p.send(
            BaseRecord::<(), _>::to(topic)
                .payload(&v)
                .partition((i % 2) as i32),
        )
        .expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// Consumes `n` records in group `group` and commits them, then leaves.
fn consume_and_commit(bootstrap: &str, topic: &str, group: &str, n: usize) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "consumed {got} of {n}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            assert!(m.payload().is_some());
            got += 1;
        }
    }
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
}

/// Proves: a Topic creates its topic; raising partitions and changing config alter it; a
/// partition decrease is refused by the API server (CEL); a config changed and a topic deleted
/// behind the operator's back are brought back; two resources naming one topic report a
/// Conflict instead of fighting; Retain keeps the topic; Delete deletes it; deleting the Cluster
/// releases the finalizers of its topics; a ConsumerGroup's status shows committed offsets and
/// lag; the operator publishes events and metrics.
#[test]
fn topics_and_consumer_groups_against_a_real_control_plane() {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let Harness {
        cp: _cp,
        // Kept alive to the end: the Weir processes.
        weir: _weir,
        rt,
        client,
        http_port,
        coordinators,
        bootstrap,
        operator,
    } = Harness::start(NS);

    let admin = {
        let _guard = rt.enter();
        GrpcAdmin::new(coordinators.clone())
    };
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), NS);
    let long = Duration::from_secs(30);

    rt.block_on(async {
        // The gRPC admin against real coordinators.
        let view = admin.describe().await.expect("describe");
        assert_eq!(view.brokers.keys().map(|b| b.get()).collect::<Vec<_>>(), vec![0, 1, 2]);

        let c: Cluster = serde_json::from_value(cluster_json("demo", NS, 3)).expect("cluster");
        clusters.create(&PostParams::default(), &c).await.expect("create Cluster");

        // Create.
        let spec = serde_json::json!({
            "cluster": "demo", "partitions": 3, "replicationFactor": 2,
            "config": { "retention.ms": "3600000" }
        });
        topics.create(&PostParams::default(), &topic_json("orders", spec)).await.expect("create Topic");
        let t = wait_for(long, "topic orders in Weir", || weir_topic(&admin, "orders")).await.expect("created");
        assert_eq!(t.partitions.len(), 3);
        assert!(t.partitions.iter().all(|p| p.replicas.len() == 2));
        assert_eq!(t.configs, BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]));
        wait_for(long, "orders Ready", || async {
            let (s, r) = ready_reason(&topics, "orders").await?;
            (s == "True").then_some(r)
        })
        .await
        .expect("ready");
        let st = topics.get("orders").await.expect("get").status.expect("status");
        assert_eq!(st.topic_id, Some(t.id.to_uuid_string()));
        assert!(topics.get("orders").await.expect("get").finalizers().contains(&"weir.dev/topic".to_string()));

        // Alter: more partitions, another config.
        let patch = serde_json::json!({ "spec": { "partitions": 5, "config": { "retention.ms": "7200000", "segment.bytes": "1048576" } } });
        topics.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("alter");
        wait_for(long, "orders altered", || async {
            let t = weir_topic(&admin, "orders").await?;
            (t.partitions.len() == 5 && t.configs.get("segment.bytes").map(String::as_str) == Some("1048576")
                && t.configs.get("retention.ms").map(String::as_str) == Some("7200000"))
            .then_some(())
        })
        .await
        .expect("altered");

        // CEL: partitions never decrease.
        let patch = serde_json::json!({ "spec": { "partitions": 2 } });
        let e = topics.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.expect_err("decrease refused");
        assert!(e.to_string().contains("partitions cannot decrease"), "{e}");
        let patch = serde_json::json!({ "spec": { "config": { "retention.mss": "1" } } });
        let e = topics.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.expect_err("unknown key refused");
        assert!(e.to_string().contains("unknown topic config key"), "{e}");

        let spec = serde_json::json!({ "cluster": "demo", "topicName": "__consumer_offsets", "partitions": 1, "replicationFactor": 1 });
        let e = topics.create(&PostParams::default(), &topic_json("internal", spec)).await.expect_err("internal topic refused");
        assert!(e.to_string().contains("must not start with '__'"), "{e}");

        // An existing topic is taken over only when the resource says so.
        admin
            .create_topic(weir_operator::admin::NewTopic {
                name: "legacy".into(),
                partitions: 1,
                replication_factor: 2,
                configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
            })
            .await
            .expect("legacy topic");
        let spec = serde_json::json!({ "cluster": "demo", "partitions": 2, "replicationFactor": 2 });
        topics.create(&PostParams::default(), &topic_json("legacy", spec)).await.expect("create legacy");
        let (s, r) = wait_for(long, "legacy status", || ready_reason(&topics, "legacy")).await.expect("status");
        assert_eq!((s.as_str(), r.as_str()), ("False", "AlreadyExists"));
        assert_eq!(weir_topic(&admin, "legacy").await.expect("legacy").configs.get("cleanup.policy").map(String::as_str), Some("compact"), "untouched without the annotation");
        let patch = serde_json::json!({ "metadata": { "annotations": { "weir.dev/adopt": "true" } } });
        topics.patch("legacy", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
        wait_for(long, "legacy adopted", || async {
            let t = weir_topic(&admin, "legacy").await?;
            (t.partitions.len() == 2 && t.configs.is_empty()).then_some(())
        })
        .await
        .expect("adopted");

        // Config values are compared as the cluster stores them: no endless re-alter.
        let patch = serde_json::json!({ "spec": { "config": { "cleanup.policy": "delete, compact", "retention.ms": "07200000", "segment.bytes": "1048576" } } });
        topics.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("alter with unnormalized values");
        wait_for(long, "orders InSync with normalized values", || async {
            let (s, r) = ready_reason(&topics, "orders").await?;
            (s == "True" && r == "InSync").then_some(())
        })
        .await
        .expect("in sync");

        // Drift: a config changed behind the operator's back is put back.
        admin
            .replace_configs("orders", BTreeMap::from([("retention.ms".to_string(), "1".to_string())]))
            .await
            .expect("alter behind its back");
        wait_for(long, "config drift undone", || async {
            let t = weir_topic(&admin, "orders").await?;
            (t.configs.get("retention.ms").map(String::as_str) == Some("7200000")
                && t.configs.contains_key("segment.bytes")
                && t.configs.contains_key("cleanup.policy"))
            .then_some(())
        })
        .await
        .expect("drift undone");

        // A topic deleted behind its back is created again (with a new id).
        let old_id = weir_topic(&admin, "orders").await.expect("orders").id;
        admin.delete_topic("orders").await.expect("delete behind its back");
        let t = wait_for(long, "orders recreated", || async {
            weir_topic(&admin, "orders").await.filter(|t| t.id != old_id)
        })
        .await
        .expect("recreated");
        assert_eq!(t.partitions.len(), 5);
        wait_for(long, "status has the new id", || async {
            let st = topics.get("orders").await.ok()?.status?;
            (st.topic_id == Some(t.id.to_uuid_string())).then_some(())
        })
        .await
        .expect("new id in status");

        // Two resources, one topic: the newer reports a Conflict and changes nothing.
        let spec = serde_json::json!({ "cluster": "demo", "topicName": "orders", "partitions": 8, "replicationFactor": 2 });
        topics.create(&PostParams::default(), &topic_json("orders-copy", spec)).await.expect("create copy");
        let (s, r) = wait_for(long, "orders-copy status", || ready_reason(&topics, "orders-copy")).await.expect("status");
        assert_eq!((s.as_str(), r.as_str()), ("False", "Conflict"));
        assert_eq!(weir_topic(&admin, "orders").await.expect("orders").partitions.len(), 5, "the copy must not alter the topic");
        topics.delete("orders-copy", &DeleteParams::default()).await.expect("delete copy");
        wait_for(long, "orders-copy gone", || async { topics.get_opt("orders-copy").await.ok()?.is_none().then_some(()) })
            .await
            .expect("copy gone");
        assert!(weir_topic(&admin, "orders").await.is_some(), "deleting the conflicting resource must not delete the topic");

        // Retain keeps the topic; Delete deletes it.
        let spec = serde_json::json!({ "cluster": "demo", "partitions": 2, "replicationFactor": 2, "deletionPolicy": "Retain" });
        topics.create(&PostParams::default(), &topic_json("kept", spec)).await.expect("create kept");
        wait_for(long, "kept in Weir", || weir_topic(&admin, "kept")).await.expect("kept created");
        topics.delete("kept", &DeleteParams::default()).await.expect("delete kept");
        wait_for(long, "kept resource gone", || async { topics.get_opt("kept").await.ok()?.is_none().then_some(()) })
            .await
            .expect("kept resource gone");
        assert!(weir_topic(&admin, "kept").await.is_some(), "Retain must keep the topic");

        topics.delete("orders", &DeleteParams::default()).await.expect("delete orders");
        wait_for(long, "orders deleted from Weir", || async { weir_topic(&admin, "orders").await.is_none().then_some(()) })
            .await
            .expect("orders deleted");
        wait_for(long, "orders resource gone", || async { topics.get_opt("orders").await.ok()?.is_none().then_some(()) })
            .await
            .expect("orders resource gone");
    });

    // A ConsumerGroup's status: committed offsets, end offsets and lag.
    let bootstrap_list = bootstrap.join(",");
    produce(&bootstrap_list, "kept", 10);
    consume_and_commit(&bootstrap_list, "kept", "billing", 10);
    produce(&bootstrap_list, "kept", 6);
    rt.block_on(async {
        let g: ConsumerGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "ConsumerGroup",
            "metadata": { "name": "billing", "namespace": NS },
            "spec": { "cluster": "demo" }
        }))
        .expect("group");
        groups
            .create(&PostParams::default(), &g)
            .await
            .expect("create ConsumerGroup");
        let st = wait_for(long, "group status with lag 6", || async {
            let st = groups.get("billing").await.ok()?.status?;
            (st.total_lag == Some(6)).then_some(st)
        })
        .await
        .expect("group status");
        assert_eq!(st.state.as_deref(), Some("Empty"));
        assert_eq!(st.members, 0);
        let committed: i64 = st.offsets.iter().map(|p| p.committed_offset).sum();
        let ends: i64 = st.offsets.iter().filter_map(|p| p.end_offset).sum();
        assert_eq!((committed, ends), (10, 16), "{:?}", st.offsets);

        // Deleting the Cluster releases the finalizer of a topic that still references it, so
        // the namespace can go; the topic's data went with the cluster.
        let spec =
            serde_json::json!({ "cluster": "demo", "partitions": 1, "replicationFactor": 1 });
        topics
            .create(&PostParams::default(), &topic_json("orphan", spec))
            .await
            .expect("create orphan");
        wait_for(long, "orphan in Weir", || weir_topic(&admin, "orphan"))
            .await
            .expect("orphan created");
        clusters
            .delete("demo", &DeleteParams::default())
            .await
            .expect("delete Cluster");
        wait_for(long, "Cluster gone", || async {
            clusters.get_opt("demo").await.ok()?.is_none().then_some(())
        })
        .await
        .expect("cluster gone");
        topics
            .delete("orphan", &DeleteParams::default())
            .await
            .expect("delete orphan");
        wait_for(long, "orphan resource gone", || async {
            topics.get_opt("orphan").await.ok()?.is_none().then_some(())
        })
        .await
        .expect("finalizer released");

        // Events and metrics.
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        for r in ["Created", "Updated", "Deleted", "Retained"] {
            assert!(
                reasons.iter().any(|x| x == r),
                "no {r} event in {reasons:?}"
            );
        }
        let metrics = http_get(http_port, "/metrics").await;
        assert!(
            metrics.contains("weir_operator_reconciles_total{controller=\"topic\"}"),
            "{metrics}"
        );
        let ready = http_get(http_port, "/readyz").await;
        assert!(
            ready.lines().next().is_some_and(|l| l.contains(" 200")),
            "{ready}"
        );
    });
    operator.stop(&rt);
}
