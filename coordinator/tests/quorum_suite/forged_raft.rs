//! Forged Raft messages sent to a real 3-coordinator quorum through the public gRPC client:
//! absurd terms and fields are refused at the edge, and the quorum still elects, commits and
//! restarts afterwards.

#![allow(clippy::unwrap_used)] // test code panics on purpose

use crate::common::*;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::Code;
use weir_model::limits::{RAFT_TERM_MAX, RAFT_TERM_STEP_MAX};
use weir_proto::v1::RaftMessage;
use weir_proto::v1::raft_client::RaftClient;

const WAIT: Duration = Duration::from_secs(20);

// The coordinators' Raft messages are openraft's serde types; this configuration serialises
// them the same way (payloads here are blank entries and memberships only).
openraft::declare_raft_types!(
    Wire:
        D = String,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

type Vote = openraft::Vote<u64>;

#[derive(Clone, Copy, Debug)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// Sends `msg` as the coordinators do; the gRPC status, or the JSON answer.
async fn send(addr: &str, rpc: Rpc, msg: &impl serde::Serialize) -> Result<Vec<u8>, tonic::Status> {
    let mut client = RaftClient::connect(format!("http://{addr}")).await.unwrap();
    let msg = RaftMessage {
        json: serde_json::to_vec(msg).unwrap(),
    };
    let answer = match rpc {
        Rpc::AppendEntries => client.append_entries(msg).await,
        Rpc::Vote => client.vote(msg).await,
        Rpc::InstallSnapshot => client.install_snapshot(msg).await,
    };
    answer.map(|r| r.into_inner().json)
}

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn append(vote: Vote) -> AppendEntriesRequest<Wire> {
    AppendEntriesRequest {
        vote,
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    }
}

fn snapshot(vote: Vote, members: &BTreeMap<u64, BasicNode>) -> InstallSnapshotRequest<Wire> {
    let voters: BTreeSet<u64> = members.keys().copied().collect();
    InstallSnapshotRequest {
        vote,
        meta: SnapshotMeta {
            last_log_id: Some(log_id(1, 1, 5)),
            last_membership: StoredMembership::new(
                Some(log_id(1, 1, 1)),
                Membership::new(vec![voters], members.clone()),
            ),
            snapshot_id: "forged".to_string(),
        },
        offset: 0,
        data: b"{}".to_vec(),
        done: false,
    }
}

/// Asserts that the coordinator at `addr` refused `msg` with InvalidArgument, saying `why`.
async fn assert_refused(addr: &str, rpc: Rpc, msg: &impl serde::Serialize, why: &str) {
    let status = send(addr, rpc, msg)
        .await
        .expect_err(&format!("{rpc:?} ({why}) to {addr} was accepted"));
    assert_eq!(status.code(), Code::InvalidArgument, "{rpc:?}: {status:?}");
    assert!(
        status.message().contains(why),
        "{rpc:?} refused for another reason than {why:?}: {}",
        status.message()
    );
}

/// Every absurd term, on every RPC, to every coordinator; and the other absurd fields.
async fn forge_everything(addrs: &[String], members: &BTreeMap<u64, BasicNode>) {
    for (i, addr) in addrs.iter().enumerate() {
        let target = i as u64 + 1;
        let other = target % 3 + 1;
        for term in [u64::MAX, u64::MAX - 1, RAFT_TERM_MAX + 1] {
            let why = "above the ceiling";
            let committed = Vote::new_committed(term, other);
            assert_refused(addr, Rpc::AppendEntries, &append(committed), why).await;
            let vote = VoteRequest::new(Vote::new(term, other), None);
            assert_refused(addr, Rpc::Vote, &vote, why).await;
            let chunk = snapshot(committed, members);
            assert_refused(addr, Rpc::InstallSnapshot, &chunk, why).await;
        }
        let jump = Vote::new(RAFT_TERM_STEP_MAX + 1_000, other);
        let vote = VoteRequest::new(jump, None);
        assert_refused(addr, Rpc::Vote, &vote, "more than").await;

        // At term 0, below every coordinator's term: openraft would only say no, so any
        // refusal here comes from the field checks.
        let low = Vote::new_committed(0, other);
        let mut far = append(low);
        far.prev_log_id = Some(log_id(0, other, u64::MAX));
        assert_refused(addr, Rpc::AppendEntries, &far, "above the ceiling").await;
        let mut gap = append(low);
        gap.entries = vec![openraft::Entry::<Wire> {
            log_id: log_id(0, other, 7),
            payload: openraft::EntryPayload::Blank,
        }];
        assert_refused(addr, Rpc::AppendEntries, &gap, "consecutive").await;
        let mut huge = snapshot(low, members);
        huge.meta.last_log_id = None;
        huge.meta.last_membership = StoredMembership::new(
            None,
            Membership::new(vec![BTreeSet::from([1])], members.clone()),
        );
        huge.offset = 1 << 40;
        assert_refused(addr, Rpc::InstallSnapshot, &huge, "snapshot chunk").await;
        let stranger = VoteRequest::new(Vote::new(0, 99), None);
        assert_refused(
            addr,
            Rpc::Vote,
            &stranger,
            "not in this coordinator's membership",
        )
        .await;
        let me = VoteRequest::new(Vote::new(0, target), None);
        assert_refused(addr, Rpc::Vote, &me, "the receiver itself").await;

        // A well-formed stale message still reaches openraft (so the refusals above are not
        // decoding failures), which turns it down in its own answer.
        let stale = VoteRequest::new(Vote::new(0, other), None);
        let answer = send(addr, Rpc::Vote, &stale).await.unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["Ok"]["vote_granted"], false, "{answer}");
    }
}

/// A forged AppendEntries, Vote or InstallSnapshot at term u64::MAX (or any absurd field) is
/// refused with InvalidArgument; afterwards a leader change, writes and a restart still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_absurd_raft_messages_are_refused_and_the_quorum_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(3, dir.path(), |_| {}).await;
    let addrs: Vec<String> = cluster.iter().map(|h| h.local_addr().to_string()).collect();
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(&addrs[id as usize - 1])))
        .collect();
    let leader = wait_for_leader(&cluster).await;
    wait_ready(&addrs[leader]).await;
    register_broker(&addrs[leader], 1).await;

    forge_everything(&addrs, &members).await;

    // Force an election: the leader stops; the other two elect one of them and commit.
    let stopped = cluster.remove(leader);
    let stopped_id = stopped.id();
    stopped.shutdown().await;
    let new_leader = wait_for_leader(&cluster).await;
    assert_ne!(cluster[new_leader].id(), stopped_id);
    register_broker(&addrs[cluster[new_leader].id() as usize - 1], 2).await;

    // The stopped coordinator starts again from its data directory and catches up.
    let addr = &addrs[stopped_id as usize - 1];
    let listener = TcpListener::bind(addr).await.unwrap();
    let mut config = test_config(stopped_id, dir.path());
    config.peers = members
        .iter()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    let restarted = weir_coordinator::start_with_listener(config, listener)
        .await
        .unwrap();
    cluster.push(restarted);
    wait_for_leader(&cluster).await;
    wait_for("the restarted coordinator to catch up", WAIT, || async {
        let d = describe(addr).await?;
        d.brokers.iter().any(|b| b.id == 2).then_some(())
    })
    .await;

    for h in cluster {
        h.shutdown().await;
    }
}
