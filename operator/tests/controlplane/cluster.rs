//! The Cluster controller against a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager built from Go modules) and a real Weir cluster (processes in network
//! namespaces): the objects it applies, scaling, a drain that loses nothing, garbage collection.
//!
//! No kubelet runs, so pods stay Pending; the Weir processes stand in for the pods the broker
//! StatefulSet would run, with the same broker ids (pod ordinals 0, 1, 2).

use crate::support::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use std::time::{Duration, Instant};
use weir_e2e::cluster::{Node, TestCluster};
use weir_e2e::workload::{Workload, read_all, verify};
use weir_operator::crd::Cluster;

const NS: &str = "weir-test";

fn env_of(sts: &StatefulSet, name: &str) -> Option<String> {
    sts.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| {
            e.value.clone().or_else(|| {
                e.value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .map(|f| format!("fieldRef:{}", f.field_path))
            })
        })
}

/// Proves: a Cluster becomes the StatefulSets, Services, ConfigMaps and PDBs it should, owned by
/// it; the StatefulSet controller makes its pods; a scale-down first moves every replica off the
/// leaving broker (the StatefulSet shrinks only then) while acks=all writes go on, and after
/// that broker is killed every acknowledged record is still there; deleting the Cluster has the
/// garbage collector remove everything it owned.
#[test]
fn cluster_objects_scale_and_drain_against_a_real_control_plane() {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let Harness {
        cp: _cp,
        mut weir,
        rt,
        client,
        http_port,
        coordinators: _,
        bootstrap,
        operator,
    } = Harness::start(NS);

    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // --- The objects a Cluster becomes.
    let uid = rt.block_on(async {
        let c: Cluster = serde_json::from_value(cluster_json("demo", NS, 3)).expect("cluster");
        let c = clusters
            .create(&PostParams::default(), &c)
            .await
            .expect("create Cluster");
        c.metadata.uid.expect("uid")
    });
    let (brokers, coordinators) = rt.block_on(async {
        let b = wait_for(Duration::from_secs(30), "broker StatefulSet", || async {
            stss.get_opt("demo-broker").await.ok().flatten()
        })
        .await
        .expect("broker StatefulSet");
        let c = wait_for(
            Duration::from_secs(30),
            "coordinator StatefulSet",
            || async { stss.get_opt("demo-coordinator").await.ok().flatten() },
        )
        .await
        .expect("coordinator StatefulSet");
        (b, c)
    });
    for sts in [&brokers, &coordinators] {
        let owner = &sts.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Cluster", uid.as_str(), Some(true))
        );
        let spec = sts.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let pod = spec.template.spec.as_ref().expect("pod spec");
        let c = &pod.containers[0];
        assert_eq!(
            c.security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem),
            Some(true)
        );
        assert!(
            c.volume_mounts
                .as_ref()
                .is_some_and(|m| m[0].mount_path == "/var/lib/weir")
        );
    }
    assert_eq!(
        env_of(&brokers, "WEIR_BROKER_ID").as_deref(),
        Some("fieldRef:metadata.labels['apps.kubernetes.io/pod-index']"),
        "broker id = pod ordinal"
    );
    assert_eq!(
        env_of(&brokers, "WEIR_ADVERTISED_KAFKA_ADDR").as_deref(),
        Some("$(POD_NAME).demo-broker.weir-test.svc:9092")
    );
    assert_eq!(
        env_of(&coordinators, "WEIR_PEERS").as_deref(),
        Some(
            "0=demo-coordinator-0.demo-coordinator.weir-test.svc:9190,1=demo-coordinator-1.demo-coordinator.weir-test.svc:9190,2=demo-coordinator-2.demo-coordinator.weir-test.svc:9190"
        )
    );
    assert_eq!(
        env_of(&brokers, "WEIR_COORDINATORS").as_deref(),
        Some(
            "demo-coordinator-0.demo-coordinator.weir-test.svc:9190,demo-coordinator-1.demo-coordinator.weir-test.svc:9190,demo-coordinator-2.demo-coordinator.weir-test.svc:9190"
        )
    );
    let claim = &brokers
        .spec
        .as_ref()
        .unwrap()
        .volume_claim_templates
        .as_ref()
        .unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "2Gi"
    );
    let probe = brokers
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .readiness_probe
        .clone()
        .expect("readiness probe");
    assert_eq!(
        probe.http_get.and_then(|h| h.path).as_deref(),
        Some("/readyz")
    );

    rt.block_on(async {
        for (name, headless) in [
            ("demo-broker", true),
            ("demo-coordinator", true),
            ("demo-bootstrap", false),
        ] {
            let s = svcs
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("Service {name}: {e}"));
            let spec = s.spec.expect("spec");
            assert_eq!(
                spec.cluster_ip.as_deref() == Some("None"),
                headless,
                "{name}"
            );
            if headless {
                assert_eq!(spec.publish_not_ready_addresses, Some(true), "{name}");
            }
            assert_eq!(s.metadata.owner_references.expect("owner")[0].uid, uid);
        }
        let cm = cms
            .get("demo-broker-config")
            .await
            .expect("broker ConfigMap");
        assert_eq!(cm.data.expect("data")["WEIR_MIN_INSYNC_REPLICAS"], "2");
        let cm = cms
            .get("demo-coordinator-config")
            .await
            .expect("coordinator ConfigMap");
        assert_eq!(
            cm.data.expect("data")["WEIR_DEFAULT_REPLICATION_FACTOR"],
            "2"
        );
        for name in ["demo-broker", "demo-coordinator"] {
            let pdb = pdbs
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("PDB {name}: {e}"));
            assert_eq!(
                pdb.spec.expect("spec").max_unavailable,
                Some(IntOrString::Int(1)),
                "{name}"
            );
        }
        // The real StatefulSet controller makes the pods (they stay Pending: no kubelet here).
        wait_for(Duration::from_secs(30), "3 broker pods", || async {
            let l = pods
                .list(&ListParams::default().labels("app.kubernetes.io/component=broker"))
                .await
                .ok()?;
            (l.items.len() == 3).then_some(())
        })
        .await
        .expect("pods");
        // Status: bootstrap address, brokers not ready (Pending pods), nothing under-replicated.
        let c = wait_for(Duration::from_secs(30), "Cluster status", || async {
            let c = clusters.get("demo").await.ok()?;
            let st = c.status.clone()?;
            (st.observed_generation == c.metadata.generation
                && st.under_replicated_partitions.is_some())
            .then_some(c)
        })
        .await
        .expect("status");
        let st = c.status.expect("status");
        assert_eq!(st.bootstrap.as_deref(), Some(bootstrap[0].as_str()));
        assert_eq!(st.under_replicated_partitions, Some(0));
        let ready = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "PodsNotReady")
        );
    });

    // --- Scale up: the StatefulSet grows at once.
    rt.block_on(async {
        let patch = serde_json::json!({ "spec": { "brokers": { "replicas": 4 } } });
        clusters
            .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("scale up");
        wait_for(
            Duration::from_secs(30),
            "broker StatefulSet at 4",
            || async {
                let s = stss.get("demo-broker").await.ok()?;
                (s.spec?.replicas == Some(4)).then_some(())
            },
        )
        .await
        .expect("scaled up");
    });

    // --- Scale down from 3 to 2 while writing with acks=all: broker 2 is drained first.
    let topic = "drained";
    weir.create_topic(topic, 6, 2, &[("min.insync.replicas", "1")], &[])
        .expect("topic");
    weir.wait_topic_in_sync(topic, Duration::from_secs(30))
        .expect("in sync");
    let on_broker_2 = |w: &mut TestCluster| -> usize {
        w.describe()
            .map(|d| {
                d.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.replicas.contains(&2) || p.adding_replicas.contains(&2))
                    .count()
            })
            .unwrap_or(usize::MAX)
    };
    assert!(
        on_broker_2(&mut weir) > 0,
        "the topic must have replicas on broker 2 to drain"
    );
    let workload = Workload::start(&bootstrap.join(","), topic, 6, Duration::from_millis(5))
        .expect("workload");
    workload
        .wait_acks_everywhere(5, Instant::now(), Duration::from_secs(30))
        .expect("writes flow");
    // Every status the operator writes is seen through a watch, not only at each poll below:
    // the drain of six small partitions can start and finish between two polls.
    let watched_draining = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let seen = watched_draining.clone();
        let api = clusters.clone();
        rt.spawn(async move {
            use futures::StreamExt;
            use kube::runtime::{WatchStreamExt, watcher};
            let config = watcher::Config::default().fields("metadata.name=demo");
            let mut events = std::pin::pin!(watcher(api, config).applied_objects());
            while let Some(next) = events.next().await {
                if let Ok(c) = next
                    && c.status.is_some_and(|s| s.draining_brokers.contains(&2))
                {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    rt.block_on(async {
        let patch = serde_json::json!({ "spec": { "brokers": { "replicas": 2 } } });
        clusters
            .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("scale down");
    });
    // The StatefulSet stays at 4 while broker 2 holds replicas (broker 3 never registered, so it
    // holds nothing), and goes to 2 only once broker 2 holds none.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut saw_draining = false;
    loop {
        let replicas = rt.block_on(async {
            stss.get("demo-broker")
                .await
                .ok()
                .and_then(|s| s.spec?.replicas)
        });
        let held = on_broker_2(&mut weir);
        let draining = rt.block_on(async {
            clusters
                .get("demo")
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| s.draining_brokers.contains(&2))
        });
        saw_draining |= draining;
        if replicas == Some(2) {
            assert_eq!(
                held, 0,
                "the StatefulSet shrank while broker 2 still held {held} replicas"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scale-down did not finish: replicas {replicas:?}, {held} replicas on broker 2"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if !saw_draining {
        // The watch may not have been polled since the status changed: give it a moment.
        saw_draining = rt
            .block_on(wait_for(
                Duration::from_secs(10),
                "the watch sees drainingBrokers",
                || {
                    let seen = watched_draining.clone();
                    async move { seen.load(std::sync::atomic::Ordering::SeqCst).then_some(()) }
                },
            ))
            .is_ok();
    }
    watch.abort();
    assert!(saw_draining, "status.drainingBrokers never showed broker 2");
    rt.block_on(async {
        wait_for(
            Duration::from_secs(30),
            "drainingBrokers cleared",
            || async {
                let st = clusters.get("demo").await.ok()?.status?;
                st.draining_brokers.is_empty().then_some(())
            },
        )
        .await
        .expect("the drain is over in status");
    });
    workload
        .wait_acks_everywhere(5, Instant::now(), Duration::from_secs(30))
        .expect("writes flow after the drain");
    let outcome = workload.finish(Duration::from_secs(30)).expect("workload");
    // The pod the StatefulSet removed would take broker 2 with it: kill it for real.
    weir.kill9(Node::Broker(2)).expect("kill broker 2");
    weir.wait_broker_fenced(2, Duration::from_secs(30))
        .expect("broker 2 fenced");
    let remaining: Vec<String> = [0, 1].iter().map(|id| weir.kafka_addr(*id)).collect();
    let stored =
        read_all(&remaining.join(","), topic, 6, Duration::from_secs(60)).expect("read back");
    let n = verify(&outcome, &stored).expect("every acknowledged record survives the drain");
    assert!(n > 0);
    eprintln!("drain: {n} records stored, every acknowledged one read back without broker 2");

    // --- Deleting the Cluster: the garbage collector removes what it owned.
    rt.block_on(async {
        clusters
            .delete("demo", &DeleteParams::default())
            .await
            .expect("delete");
        wait_for(
            Duration::from_secs(60),
            "owned objects garbage-collected",
            || async {
                let left = stss.list(&ListParams::default()).await.ok()?.items.len()
                    + svcs
                        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
                        .await
                        .ok()?
                        .items
                        .len()
                    + pdbs.list(&ListParams::default()).await.ok()?.items.len()
                    + cms
                        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
                        .await
                        .ok()?
                        .items
                        .len();
                (left == 0).then_some(())
            },
        )
        .await
        .expect("garbage collection");
        let metrics = http_get(http_port, "/metrics").await;
        assert!(
            metrics.contains("weir_operator_reconciles_total{controller=\"cluster\"}"),
            "{metrics}"
        );
        assert!(
            metrics.contains("weir_operator_reassignments_total"),
            "{metrics}"
        );
    });
    operator.stop(&rt);
    weir.assert_no_crashes().expect("no Weir process crashed");
}
