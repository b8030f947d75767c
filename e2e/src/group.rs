//! Consumer-group members for end-to-end tests, and a referee that watches them.
//!
//! A [`Member`] is a librdkafka consumer on a thread of its own: it subscribes to one topic
//! (eager rebalance protocol, manual commits), records every record it is handed, and commits
//! what it has processed every `commit_every` and whenever partitions are revoked (the usual
//! "commit after processing" loop). Its rebalance callbacks report to a shared [`Tracker`],
//! which checks, as they happen, that
//!
//! - no partition is assigned to a member while another member still holds it;
//! - the members of one generation were given disjoint assignments;
//! - a member is only handed records of partitions it holds.
//!
//! Callbacks run inside librdkafka's C callbacks, where a panic would abort the process, so the
//! tracker records violations and the test asserts on them ([`Tracker::assert_clean`],
//! [`Tracker::wait_stable`]).
//!
//! [`find_coordinator`] asks a broker, with a raw FindCoordinator request, which broker
//! coordinates a group; [`committed`] reads a group's committed offsets with OffsetFetch.

use crate::workload::{Outcome, parse_value, value};
use anyhow::{Context, bail};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
/// How often the waits below look again.
const WAIT_POLL: Duration = Duration::from_millis(50);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// librdkafka's view of the group it is in: (generation id, member id), or `None` before it
/// first joined.
///
/// The `rdkafka` crate wraps `rd_kafka_consumer_group_metadata()` but keeps its getters private,
/// so this calls the C functions itself.
#[allow(unsafe_code)]
pub fn generation<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<(i32, String)> {
    use rdkafka::bindings as rd;
    // SAFETY: `native_ptr` is a live consumer handle for as long as `consumer` is borrowed.
    // `rd_kafka_consumer_group_metadata` returns a new object that we own and destroy below;
    // the member id it returns points into that object and is copied out before the destroy.
    unsafe {
        let md = rd::rd_kafka_consumer_group_metadata(consumer.client().native_ptr());
        if md.is_null() {
            return None;
        }
        let gen_id = rd::rd_kafka_consumer_group_metadata_generation_id(md);
        let member = rd::rd_kafka_consumer_group_metadata_member_id(md);
        let member = if member.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(member)
                .to_string_lossy()
                .into_owned()
        };
        rd::rd_kafka_consumer_group_metadata_destroy(md);
        (gen_id >= 0).then_some((gen_id, member))
    }
}

/// One record a member was handed.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub member: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    /// The member's generation when it got the record.
    pub generation: i32,
}

/// One commit a member made and the broker accepted.
#[derive(Debug, Clone)]
pub struct Commit {
    pub member: String,
    pub partition: i32,
    /// The next offset to read: one past the last processed record.
    pub offset: i64,
    pub generation: i32,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// partition → (member holding it, generation it was assigned in).
    owner: BTreeMap<i32, (String, i32)>,
    /// member → what it holds now (its last assignment, until revoked).
    held: BTreeMap<String, (i32, BTreeSet<i32>)>,
    /// generation → member → what that member was assigned in that generation.
    generations: BTreeMap<i32, BTreeMap<String, BTreeSet<i32>>>,
    violations: Vec<String>,
    consumed: Vec<Consumed>,
    commits: Vec<Commit>,
    /// Commits the broker refused, and other errors the members saw, with who saw them.
    errors: Vec<String>,
    /// Rebalance events in order, for failure messages.
    events: Vec<String>,
}

/// Shared record of what every member of a group holds, was handed and committed; see the
/// module documentation.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: Arc<Mutex<State>>,
    /// Events are stamped with the time since this.
    started: Instant,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            state: Arc::default(),
            started: Instant::now(),
        }
    }

    fn stamp(&self) -> String {
        format!("+{:.2}s", self.started.elapsed().as_secs_f64())
    }

    fn assign(&self, member: &str, generation: i32, parts: BTreeSet<i32>) {
        let stamp = self.stamp();
        let mut s = lock(&self.state);
        for &p in &parts {
            if let Some((other, since)) = s.owner.get(&p)
                && other != member
            {
                let v = format!(
                    "{stamp} generation {generation}: partition {p} assigned to {member} while {other} \
                     still holds it (assigned to {other} in generation {since})"
                );
                s.violations.push(v);
            }
        }
        let peers = s.generations.entry(generation).or_default();
        let mut clashes = Vec::new();
        for (other, theirs) in peers.iter() {
            if other != member && !theirs.is_disjoint(&parts) {
                clashes.push(format!(
                    "{stamp} generation {generation}: {member} got {parts:?} and {other} got {theirs:?}: \
                     both hold {:?}",
                    theirs.intersection(&parts).collect::<Vec<_>>()
                ));
            }
        }
        peers.insert(member.to_string(), parts.clone());
        s.violations.extend(clashes);
        for &p in &parts {
            s.owner.insert(p, (member.to_string(), generation));
        }
        s.events.push(format!(
            "{stamp} {member} assigned {parts:?} in generation {generation}"
        ));
        s.held.insert(member.to_string(), (generation, parts));
    }

    fn revoke(&self, member: &str, generation: i32, parts: &BTreeSet<i32>) {
        let stamp = self.stamp();
        let mut s = lock(&self.state);
        for p in parts {
            if s.owner.get(p).is_some_and(|(m, _)| m == member) {
                s.owner.remove(p);
            }
        }
        if let Some((_, held)) = s.held.get_mut(member) {
            held.retain(|p| !parts.contains(p));
        }
        s.events.push(format!(
            "{stamp} {member} revoked {parts:?} (generation {generation})"
        ));
    }

    /// The member closed: it holds nothing any more.
    fn left(&self, member: &str) {
        let stamp = self.stamp();
        let mut s = lock(&self.state);
        if let Some((_, held)) = s.held.remove(member)
            && !held.is_empty()
        {
            // librdkafka revokes on close; a member that closed without it is worth a note.
            s.events
                .push(format!("{stamp} {member} closed still holding {held:?}"));
            for p in held {
                if s.owner.get(&p).is_some_and(|(m, _)| m == member) {
                    s.owner.remove(&p);
                }
            }
        }
        s.events.push(format!("{stamp} {member} closed"));
    }

    fn consumed(&self, c: Consumed) {
        let stamp = self.stamp();
        let mut s = lock(&self.state);
        let holds = s
            .held
            .get(&c.member)
            .is_some_and(|(_, held)| held.contains(&c.partition));
        if !holds {
            let v = format!(
                "{stamp} {} was handed {}/{} while not holding partition {} (holds {:?})",
                c.member,
                c.partition,
                c.offset,
                c.partition,
                s.held.get(&c.member)
            );
            s.violations.push(v);
        }
        s.consumed.push(c);
    }

    fn committed(&self, member: &str, generation: i32, offsets: &BTreeMap<i32, i64>) {
        let at = Instant::now();
        let mut s = lock(&self.state);
        for (&partition, &offset) in offsets {
            s.commits.push(Commit {
                member: member.to_string(),
                partition,
                offset,
                generation,
                at,
            });
        }
    }

    fn error(&self, member: &str, what: String) {
        let stamp = self.stamp();
        lock(&self.state)
            .errors
            .push(format!("{stamp} {member}: {what}"));
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    pub fn consumed_records(&self) -> Vec<Consumed> {
        lock(&self.state).consumed.clone()
    }

    pub fn commits(&self) -> Vec<Commit> {
        lock(&self.state).commits.clone()
    }

    pub fn errors(&self) -> Vec<String> {
        lock(&self.state).errors.clone()
    }

    pub fn events(&self) -> Vec<String> {
        lock(&self.state).events.clone()
    }

    /// member → (generation, partitions) it holds now.
    pub fn held(&self) -> BTreeMap<String, (i32, BTreeSet<i32>)> {
        lock(&self.state).held.clone()
    }

    /// Every generation seen and what each member was assigned in it.
    pub fn generations(&self) -> BTreeMap<i32, BTreeMap<String, BTreeSet<i32>>> {
        lock(&self.state).generations.clone()
    }

    /// The rebalance history and errors, for a failure message.
    pub fn history(&self) -> String {
        let s = lock(&self.state);
        let last = |v: &[String], n: usize| v[v.len().saturating_sub(n)..].join("\n    ");
        format!(
            "rebalance events:\n    {}\nerrors seen by members ({} in all, the last 20):\n    {}",
            last(&s.events, 60),
            s.errors.len(),
            last(&s.errors, 20)
        )
    }

    /// Fails with every violation recorded so far and the rebalance history.
    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "{} group invariant violations:\n  {}\n{}",
            v.len(),
            v.join("\n  "),
            self.history()
        );
    }

    /// Waits until exactly `members` hold partitions, each a non-empty share, disjoint, together
    /// all of `0..partitions`, all from the same generation. Returns that generation. Fails at
    /// once on a recorded violation.
    pub fn wait_stable(&self, members: &[&str], partitions: i32, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        let all: BTreeSet<i32> = (0..partitions).collect();
        loop {
            self.assert_clean();
            let held = self.held();
            let mut union = BTreeSet::new();
            let mut disjoint = true;
            let mut gens = BTreeSet::new();
            for (_, (g, parts)) in held.iter().filter(|(_, (_, p))| !p.is_empty()) {
                gens.insert(*g);
                for p in parts {
                    disjoint &= union.insert(*p);
                }
            }
            let holders: BTreeSet<&str> = held
                .iter()
                .filter(|(_, (_, p))| !p.is_empty())
                .map(|(m, _)| m.as_str())
                .collect();
            let want: BTreeSet<&str> = members.iter().copied().collect();
            if holders == want && disjoint && union == all && gens.len() == 1 {
                return gens.into_iter().next().unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                panic!(
                    "the group did not settle within {timeout:?}: wanted {members:?} to share \
                     partitions 0..{partitions} in one generation; holding now (member: \
                     (generation, partitions)): {held:?}\n{}",
                    self.history()
                );
            }
            std::thread::sleep(WAIT_POLL);
        }
    }

    /// Waits until `member` has been handed at least `n` records in all.
    pub fn wait_consumed_by(&self, member: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_clean();
            let got = lock(&self.state)
                .consumed
                .iter()
                .filter(|c| c.member == member)
                .count();
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{member} got {got} records, not {n}, within {timeout:?}\n{}",
                self.history()
            );
            std::thread::sleep(WAIT_POLL);
        }
    }

    /// Waits until, in every partition `p`, the members have been handed every offset in
    /// `from[p]..to[p]` (0 where `from` has no entry) at least once.
    pub fn wait_consumed(
        &self,
        topic: &str,
        from: &BTreeMap<i32, i64>,
        to: &BTreeMap<i32, i64>,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_clean();
            let missing = self.missing(from, to);
            if missing.values().all(Vec::is_empty) {
                return;
            }
            if Instant::now() >= deadline {
                let summary: BTreeMap<i32, String> = missing
                    .iter()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(p, m)| {
                        (
                            *p,
                            format!("{} missing, the first {:?}", m.len(), &m[..m.len().min(5)]),
                        )
                    })
                    .collect();
                panic!(
                    "{topic}: records never handed to any member within {timeout:?} (partition: \
                     missing offsets): {summary:?}\n{}",
                    self.history()
                );
            }
            std::thread::sleep(WAIT_POLL);
        }
    }

    /// Offsets in `from[p]..to[p]` that no member was handed, per partition of `to`.
    pub fn missing(
        &self,
        from: &BTreeMap<i32, i64>,
        to: &BTreeMap<i32, i64>,
    ) -> BTreeMap<i32, Vec<i64>> {
        let s = lock(&self.state);
        let mut seen: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
        for c in &s.consumed {
            seen.entry(c.partition).or_default().insert(c.offset);
        }
        to.iter()
            .map(|(&p, &end)| {
                let got = seen.get(&p);
                let start = from.get(&p).copied().unwrap_or(0);
                let missing = (start..end)
                    .filter(|o| !got.is_some_and(|g| g.contains(o)))
                    .collect();
                (p, missing)
            })
            .collect()
    }
}

/// Settings every member uses: eager protocol (`roundrobin`), manual commits, from the
/// beginning when the group has no committed offset, and a heartbeat short enough that the
/// members learn of a rebalance within half a second.
pub fn member_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("partition.assignment.strategy", "roundrobin")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("max.poll.interval.ms", "30000")
        .set("log_level", "4");
    c
}

/// A member's context: rebalance callbacks that report to the tracker and commit on revoke.
struct MemberContext {
    name: String,
    tracker: Tracker,
    /// partition → next offset to commit (one past the last record processed), for the
    /// partitions held now; emptied of a partition when it is revoked.
    processed: Mutex<BTreeMap<i32, i64>>,
    /// What was last committed, so an unchanged position is not committed again.
    last_committed: Mutex<BTreeMap<i32, i64>>,
    topic: String,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Warnings and worse, e.g. a FindCoordinator or JoinGroup the broker refused: the
        // first thing to read when a group does not form.
        if level as i32 <= RDKafkaLogLevel::Warning as i32 {
            self.tracker.error(
                &self.name,
                format!("librdkafka {level:?} {fac}: {log_message}"),
            );
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.tracker
            .error(&self.name, format!("client error {error}: {reason}"));
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                // Commit what was processed before letting go, so the next owner starts there.
                self.commit(consumer, Some(&parts));
                lock(&self.processed).retain(|p, _| !parts.contains(p));
                lock(&self.last_committed).retain(|p, _| !parts.contains(p));
                let g = generation(consumer).map_or(-1, |g| g.0);
                self.tracker.revoke(&self.name, g, &parts);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => self
                .tracker
                .error(&self.name, format!("rebalance error: {e}")),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let g = generation(consumer).map_or(-1, |g| g.0);
            self.tracker.assign(&self.name, g, partitions_of(tpl));
        }
    }
}

impl MemberContext {
    /// Commits processed positions (of `only` partitions, or of all held), synchronously.
    fn commit(&self, consumer: &BaseConsumer<Self>, only: Option<&BTreeSet<i32>>) {
        let todo: BTreeMap<i32, i64> = {
            let processed = lock(&self.processed);
            let last = lock(&self.last_committed);
            processed
                .iter()
                .filter(|(p, _)| only.is_none_or(|o| o.contains(p)))
                .filter(|(p, o)| last.get(p) != Some(o))
                .map(|(p, o)| (*p, *o))
                .collect()
        };
        if todo.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &todo {
            if let Err(e) = tpl.add_partition_offset(&self.topic, p, Offset::Offset(o)) {
                self.tracker
                    .error(&self.name, format!("building a commit: {e}"));
                return;
            }
        }
        let g = generation(consumer).map_or(-1, |g| g.0);
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.tracker.committed(&self.name, g, &todo);
                lock(&self.last_committed).extend(todo);
            }
            Err(e) => self.tracker.error(
                &self.name,
                format!("commit {todo:?} in generation {g} refused: {e}"),
            ),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// A group member on its own thread; see the module documentation.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Member {
    /// Starts a member named `name` (the name is only for messages) that subscribes to `topic`
    /// with `config` (see [`member_config`]) and commits every `commit_every`.
    pub fn start(
        name: &str,
        config: &ClientConfig,
        topic: &str,
        tracker: &Tracker,
        commit_every: Duration,
    ) -> anyhow::Result<Member> {
        let context = MemberContext {
            name: name.to_string(),
            tracker: tracker.clone(),
            processed: Mutex::new(BTreeMap::new()),
            last_committed: Mutex::new(BTreeMap::new()),
            topic: topic.to_string(),
        };
        let consumer: BaseConsumer<MemberContext> = config
            .create_with_context(context)
            .with_context(|| format!("creating consumer {name}"))?;
        consumer
            .subscribe(&[topic])
            .with_context(|| format!("{name} subscribing to {topic}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let tracker = tracker.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("member-{name}"))
                .spawn(move || run(consumer, &name, &tracker, &stop, commit_every))?
        };
        Ok(Member {
            name: name.to_string(),
            stop,
            thread: Some(thread),
        })
    }

    /// Commits what it processed, closes the consumer (librdkafka revokes and sends
    /// LeaveGroup) and waits up to `timeout` for that.
    pub fn stop(mut self, timeout: Duration) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().context("stopped twice")?;
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                bail!("member {} did not close within {timeout:?}", self.name);
            }
            std::thread::sleep(WAIT_POLL);
        }
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("member {}'s thread panicked", self.name))?
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // A failing test drops members without stopping them: let the thread close the
        // consumer on its own; joining could hang the test's unwinding.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(
    consumer: BaseConsumer<MemberContext>,
    name: &str,
    tracker: &Tracker,
    stop: &AtomicBool,
    commit_every: Duration,
) -> anyhow::Result<()> {
    let mut last_commit = Instant::now();
    let ctx = consumer.context().clone();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL) {
            Some(Ok(m)) => {
                let g = generation(&consumer).map_or(-1, |g| g.0);
                tracker.consumed(Consumed {
                    member: name.to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    generation: g,
                });
                // Processing is recording; the position to commit is the next offset.
                lock(&ctx.processed).insert(m.partition(), m.offset() + 1);
            }
            Some(Err(e)) => tracker.error(name, format!("poll: {e}")),
            None => {}
        }
        if last_commit.elapsed() >= commit_every {
            ctx.commit(&consumer, None);
            last_commit = Instant::now();
        }
    }
    ctx.commit(&consumer, None);
    // Dropping closes: the revoke callback runs (and commits nothing new), then LeaveGroup.
    drop(consumer);
    tracker.left(name);
    Ok(())
}

/// The end offset of each partition `0..partitions` implied by a finished workload: one past
/// the highest acknowledged offset (0 for a partition with none).
pub fn acked_ends(outcome: &Outcome, partitions: i32) -> BTreeMap<i32, i64> {
    let mut ends: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    for ack in &outcome.acks {
        let e = ends.entry(ack.partition).or_default();
        *e = (*e).max(ack.offset + 1);
    }
    ends
}

/// Asserts that every record the workload had acknowledged was handed to some member, at its
/// acknowledged offset and with its value. Returns the records handed out more than once:
/// ((partition, offset), the members that got it).
pub fn assert_acked_read(outcome: &Outcome, tracker: &Tracker) -> Vec<((i32, i64), Vec<String>)> {
    let consumed = tracker.consumed_records();
    let mut reads: BTreeMap<(i32, i64), Vec<String>> = BTreeMap::new();
    let mut values: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    for r in &consumed {
        reads
            .entry((r.partition, r.offset))
            .or_default()
            .push(r.member.clone());
        values.insert((r.partition, r.offset), r.value.as_str());
        assert_eq!(
            parse_value(&r.value).map(|v| v.0),
            Some(r.partition),
            "{} read {:?} at {}/{}: not a value written to that partition",
            r.member,
            r.value,
            r.partition,
            r.offset
        );
    }
    for ack in &outcome.acks {
        let want = value(ack.partition, ack.seq);
        let got = values.get(&(ack.partition, ack.offset)).copied();
        assert_eq!(
            got,
            Some(want.as_str()),
            "{want} was acknowledged at {}/{}; the members read {got:?} there\n{}",
            ack.partition,
            ack.offset,
            tracker.history()
        );
    }
    reads.into_iter().filter(|(_, who)| who.len() > 1).collect()
}

/// The key (and value) of the `i`th record [`produce_tail`] writes to `partition`.
pub fn tail_key(partition: i32, i: i64) -> String {
    format!("tail-{partition}-{i}")
}

/// Writes `n` keyed records to each partition of `ends` (acks=all, idempotent) and returns
/// the new end offsets, checking that the records landed right after `ends`.
pub fn produce_tail(
    bootstrap: &str,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    n: i64,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create()
        .context("creating the tail producer")?;
    for &p in ends.keys() {
        for i in 0..n {
            let key = tail_key(p, i);
            producer
                .send(
                    BaseRecord::<_, _, ()>::to(topic)
                        .partition(p)
                        .key(&key)
                        .payload(&key),
                )
                .map_err(|(e, _)| e)
                .context("queueing a tail record")?;
        }
    }
    producer.flush(timeout).context("flushing the tail")?;
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating a watermark probe")?;
    let mut out = BTreeMap::new();
    for (&p, &end) in ends {
        let (_, high) = probe
            .fetch_watermarks(topic, p, timeout)
            .with_context(|| format!("end offset of {topic}/{p}"))?;
        if high != end + n {
            bail!("{topic}/{p} ends at {high} after the tail, not {end} + {n}");
        }
        out.insert(p, high);
    }
    Ok(out)
}

/// Starts fresh members of the group in `config` and checks that together they read exactly
/// the offsets `from[p]..to[p]` of every partition, once each and nothing below `from`: the
/// group resumes at its committed offsets `from`, skipping nothing. Then closes them and checks
/// that they committed `to`. The records there must be [`produce_tail`]'s.
pub fn assert_resumes_at(
    config: &ClientConfig,
    topic: &str,
    members: &[&str],
    from: &BTreeMap<i32, i64>,
    to: &BTreeMap<i32, i64>,
    timeout: Duration,
) {
    let tracker = Tracker::new();
    let started: Vec<Member> = members
        .iter()
        .map(|m| {
            Member::start(m, config, topic, &tracker, Duration::from_millis(200))
                .unwrap_or_else(|e| panic!("starting {m}: {e:#}"))
        })
        .collect();
    tracker.wait_stable(members, to.len() as i32, timeout);
    tracker.wait_consumed(topic, from, to, timeout);
    for m in started {
        let name = m.name.clone();
        m.stop(timeout)
            .unwrap_or_else(|e| panic!("closing {name}: {e:#}"));
    }
    tracker.assert_clean();
    let mut read: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in tracker.consumed_records() {
        read.entry(r.partition).or_default().push(r.offset);
        let i = r.offset - from.get(&r.partition).copied().unwrap_or(0);
        assert_eq!(
            r.key.as_deref(),
            Some(tail_key(r.partition, i).as_str()),
            "{} read {}/{} with key {:?}: not the tail record expected there",
            r.member,
            r.partition,
            r.offset,
            r.key
        );
    }
    for offsets in read.values_mut() {
        offsets.sort_unstable();
    }
    let want: BTreeMap<i32, Vec<i64>> = to
        .iter()
        .map(|(&p, &end)| (p, (from.get(&p).copied().unwrap_or(0)..end).collect()))
        .collect();
    assert_eq!(
        read, want,
        "offsets a restarted group read (left) vs. exactly from the committed offsets to the end, \
         once each (right)"
    );
    let bootstrap = config.get("bootstrap.servers").unwrap_or_default();
    let group = config.get("group.id").unwrap_or_default();
    let after = committed(bootstrap, group, topic, to.len() as i32, timeout)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let want: BTreeMap<i32, Option<i64>> = to.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(
        after, want,
        "committed offsets after the restarted group closed (left) vs. the end offsets (right)"
    );
}

/// The group's committed offsets for partitions `0..partitions` of `topic` (OffsetFetch),
/// `None` where nothing is committed. Retries errors (a coordinator that moves) until
/// `timeout`.
pub fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .context("creating an OffsetFetch client")?;
    committed_with(&consumer, topic, partitions, timeout)
}

/// [`committed`] through an existing client (which never subscribes).
pub fn committed_with(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let err = match consumer.committed_offsets(tpl.clone(), left.min(Duration::from_secs(5))) {
            Ok(got) => {
                let mut out = BTreeMap::new();
                let mut bad = Vec::new();
                for e in got.elements() {
                    if let Err(err) = e.error() {
                        bad.push(format!("{}: {err}", e.partition()));
                    }
                    let o = match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    };
                    out.insert(e.partition(), o);
                }
                if bad.is_empty() {
                    return Ok(out);
                }
                bad.join(", ")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("OffsetFetch for {topic} did not succeed within {timeout:?}: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where a group's coordinator is, as a broker answers FindCoordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// Largest response accepted from a broker here (FindCoordinator and ApiVersions are small).
const RESPONSE_BYTES_MAX: usize = 1 << 20;
const WIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks each broker in `bootstrap` in turn which broker coordinates `group` (FindCoordinator,
/// key type 0), until one answers without error or `timeout` passes.
pub fn find_coordinator(
    bootstrap: &str,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<Coordinator> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<&str> = bootstrap.split(',').map(str::trim).collect();
    let mut last = String::new();
    for attempt in 0.. {
        let addr = addrs[attempt % addrs.len()];
        match find_coordinator_at(addr, group) {
            Ok(c) => return Ok(c),
            Err(e) => last = format!("{addr}: {e:#}"),
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no coordinator for group {group} within {timeout:?}; last answer: {last}")
}

fn find_coordinator_at(addr: &str, group: &str) -> anyhow::Result<Coordinator> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("resolving {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&sock, WIRE_TIMEOUT)?;
    stream.set_read_timeout(Some(WIRE_TIMEOUT))?;
    stream.set_write_timeout(Some(WIRE_TIMEOUT))?;
    let versions: ApiVersionsResponse = call(&mut stream, 1, 0, &ApiVersionsRequest::default())?;
    let range = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::FindCoordinator as i16)
        .context("the broker does not list FindCoordinator in ApiVersions")?;
    // v4 and later batch keys (what the Java client sends); older ones take one key (librdkafka).
    let version = range.max_version.min(4);
    if version < range.min_version {
        bail!(
            "FindCoordinator versions {}..={} not spoken here",
            range.min_version,
            range.max_version
        );
    }
    let key = StrBytes::from_string(group.to_string());
    let mut req = FindCoordinatorRequest::default().with_key_type(0);
    if version >= 4 {
        req = req.with_coordinator_keys(vec![key]);
    } else {
        req = req.with_key(key);
    }
    let resp: FindCoordinatorResponse = call(&mut stream, 2, version, &req)?;
    let (error, node, host, port) = if version >= 4 {
        let c = resp
            .coordinators
            .first()
            .context("FindCoordinator answered no coordinator")?;
        (c.error_code, c.node_id.0, c.host.to_string(), c.port)
    } else {
        (
            resp.error_code,
            resp.node_id.0,
            resp.host.to_string(),
            resp.port,
        )
    };
    if error != 0 {
        bail!("FindCoordinator v{version} error code {error}");
    }
    Ok(Coordinator {
        node_id: node,
        host,
        port,
    })
}

/// Sends one request and reads its response.
fn call<R: Request>(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
    req: &R,
) -> anyhow::Result<R::Response> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-e2e")));
    let mut body = Vec::new();
    header.encode(&mut body, R::header_version(version))?;
    req.encode(&mut body, version)?;
    let len = i32::try_from(body.len()).context("request too large")?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(&body)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = usize::try_from(i32::from_be_bytes(len)).context("negative response size")?;
    if len > RESPONSE_BYTES_MAX {
        bail!("response of {len} bytes is over {RESPONSE_BYTES_MAX}");
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    let mut buf = &buf[..];
    let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))?;
    if header.correlation_id != correlation_id {
        bail!(
            "correlation id {} in the response, {correlation_id} sent",
            header.correlation_id
        );
    }
    R::Response::decode(&mut buf, version)
}
