//! `weir group list|describe|reset-offsets|delete`: consumer groups, through the group APIs
//! any Kafka-compatible cluster serves. Modelled on Kafka's `kafka-consumer-groups.sh`.
//!
//! How each part is done with librdkafka (the `rdkafka` 0.39 binding), and why:
//!
//! - **Groups, states, members**: librdkafka's `rd_kafka_list_groups`, which sends ListGroups
//!   to every broker and DescribeGroups to each for the groups it coordinates. It gives the
//!   state, protocol type, protocol and each member's id, client id, host and assignment bytes
//!   (decoded by `weir_group::consumer_protocol` when the protocol type is `consumer`). A group no broker
//!   lists does not exist.
//! - **Committed offsets**: OffsetFetch, sent by a consumer that carries the group id but never
//!   subscribes, so it never joins the group. The binding has no OffsetFetch for "every topic"
//!   (ListConsumerGroupOffsets), so `describe` asks for every partition of every topic in the
//!   cluster, in one request, and keeps those with a committed offset. Offsets committed for
//!   a topic that has since been deleted are therefore not shown.
//! - **Log end offsets**: ListOffsets(latest) with `read_uncommitted` isolation: the high
//!   watermark, as Kafka's tool shows it. Lag is log end minus committed; it can be negative
//!   if a committed offset lies past the log end (the log was truncated or deleted).
//! - **Coordinator**: librdkafka looks it up (FindCoordinator) for any consumer with a group
//!   id, but only reports it in its statistics, as the address of its logical
//!   `GroupCoordinator` broker; `describe` maps that address to a broker id. Best effort: null
//!   when the statistics have not named it within [`COORDINATOR_WAIT_MAX`].
//! - **Resetting offsets**: OffsetCommit from that same outside consumer (generation -1, no
//!   member id), with explicit offsets and no subscription or assignment. Kafka accepts such a
//!   commit only while the group has no members, so the command refuses, dry run or not,
//!   unless the group is Empty, Dead or unknown, as Kafka's tool does. A consumer that joins
//!   between that check and the commit makes the broker refuse the commit.
//! - **Deleting**: DeleteGroups through the admin client.

use crate::client::{Connection, fetch_metadata};
use crate::config::{OutputFormat, TopicPartitions, parse_datetime_ms, parse_group};
use crate::error::{Error, Result};
use crate::output::{Table, format_timestamp_ms, print, print_json};
use crate::topic::find_topic;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use weir_group::consumer_protocol::Assignment;

/// Longest single wait while polling for statistics.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How often librdkafka reports statistics to `describe` (which reads the coordinator there).
const STATISTICS_INTERVAL_MS: u64 = 100;
/// How long `describe` waits for the statistics to name the coordinator. The lookup is done
/// by then in practice: the committed offsets were fetched from the coordinator.
const COORDINATOR_WAIT_MAX: Duration = Duration::from_secs(3);
const _: () = assert!(STATISTICS_INTERVAL_MS * 3 <= COORDINATOR_WAIT_MAX.as_millis() as u64);

/// A topic and partition; sorts by topic, then partition.
type Tp = (String, i32);

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups with their state, protocol type and number of members.
    List,
    /// Show a group: state, coordinator, members and their partitions, and for each partition
    /// the committed offset, log end offset and lag.
    ///
    /// Shown are the partitions the group has a committed offset in (in topics that exist) and
    /// those its members hold. Lag is log end (high watermark) minus committed. A group of
    /// Kafka's new consumer protocol (KIP-848) shows as Dead without members, with a note:
    /// DescribeGroups, which this uses, describes classic groups only.
    Describe(DescribeArgs),
    /// Move a group's committed offsets. Prints the plan (current -> new per partition) and
    /// commits it only with --execute. The group must have no members: stop its consumers first.
    #[command(
        after_help = "Examples:\n  weir group reset-offsets billing --topic orders --to-earliest\n  weir group reset-offsets billing --topic orders:0,2 --shift-by -100 --execute\n  weir group reset-offsets billing --all-topics --to-datetime 2024-05-01T12:00:00Z --execute"
    )]
    ResetOffsets(ResetArgs),
    /// Delete consumer groups and their committed offsets. A group with members is refused:
    /// stop its consumers first.
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// The group id.
    #[arg(value_parser = parse_group)]
    pub group: String,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("partitions").required(true)
    .args(["topics", "all_topics"])))]
#[command(group(clap::ArgGroup::new("target").required(true)
    .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
pub struct ResetArgs {
    /// The group id.
    #[arg(value_parser = parse_group)]
    pub group: String,
    /// A topic whose offsets to reset: all its partitions (`orders`) or the ones listed
    /// (`orders:0,2`). Repeatable.
    #[arg(long = "topic", short = 't', value_name = "TOPIC[:P,P...]")]
    pub topics: Vec<TopicPartitions>,
    /// Every partition the group has a committed offset for.
    #[arg(long)]
    pub all_topics: bool,
    /// To each partition's log start (its earliest record still kept).
    #[arg(long, help_heading = "New offsets (one of)")]
    pub to_earliest: bool,
    /// To each partition's log end: skip every record there now.
    #[arg(long, help_heading = "New offsets (one of)")]
    pub to_latest: bool,
    /// To this offset; outside log start..log end it is moved to the nearer of the two.
    #[arg(long, value_name = "OFFSET", help_heading = "New offsets (one of)",
          allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
    /// To the first record at or after this time, RFC 3339 with a zone
    /// (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00); the log end where there is none.
    #[arg(long, value_name = "TIME", help_heading = "New offsets (one of)",
          value_parser = parse_datetime_ms)]
    pub to_datetime: Option<i64>,
    /// Move each committed offset by N (negative: back), within log start..log end. Needs a
    /// committed offset in every partition named.
    #[arg(
        long,
        value_name = "N",
        help_heading = "New offsets (one of)",
        allow_negative_numbers = true
    )]
    pub shift_by: Option<i64>,
    /// Commit the new offsets. Without it nothing changes: a dry run.
    #[arg(long)]
    pub execute: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The group ids.
    #[arg(required = true, value_parser = parse_group)]
    pub groups: Vec<String>,
    /// Succeed without change for a group that does not exist.
    #[arg(long)]
    pub if_exists: bool,
}

/// Where `reset-offsets` moves each partition's committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the epoch.
    Datetime(i64),
    ShiftBy(i64),
}

impl ResetArgs {
    /// The one target clap made sure was given.
    pub fn target(&self) -> ResetTo {
        if self.to_earliest {
            ResetTo::Earliest
        } else if self.to_latest {
            ResetTo::Latest
        } else if let Some(offset) = self.to_offset {
            ResetTo::Offset(offset)
        } else if let Some(ms) = self.to_datetime {
            ResetTo::Datetime(ms)
        } else if let Some(n) = self.shift_by {
            ResetTo::ShiftBy(n)
        } else {
            unreachable!("clap requires one of the --to-* flags or --shift-by")
        }
    }
}

pub async fn run(
    connection: &Connection,
    output: OutputFormat,
    command: GroupCommand,
) -> Result<()> {
    let connection = connection.clone();
    match command {
        GroupCommand::Delete(args) => delete(&connection, output, args).await,
        // librdkafka's group calls block; they get a blocking thread, like `consume`.
        command => tokio::task::spawn_blocking(move || match command {
            GroupCommand::List => list(&connection, output),
            GroupCommand::Describe(args) => describe(&connection, output, &args),
            GroupCommand::ResetOffsets(args) => reset_offsets(&connection, output, &args),
            GroupCommand::Delete(_) => unreachable!("handled above"),
        })
        .await
        .map_err(|_join| Error::Panicked { what: "group" })?,
    }
}

// --- list ----------------------------------------------------------------------------------

fn list(connection: &Connection, output: OutputFormat) -> Result<()> {
    let admin = connection.admin()?;
    let client = admin.client.inner();
    fetch_metadata(client, connection, None)?;
    let mut groups = describe_groups(client, connection, None)?;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    match output {
        OutputFormat::Json => print_json(&json!({
            "groups": groups.iter().map(|g| json!({
                "group": g.name,
                "state": g.state,
                "protocol_type": non_empty(&g.protocol_type),
                "protocol": non_empty(&g.protocol),
                "members": g.members.len(),
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let mut table = Table::new(vec![
                "GROUP",
                "STATE",
                "PROTOCOL-TYPE",
                "PROTOCOL",
                "MEMBERS",
            ]);
            for g in &groups {
                table.row(vec![
                    g.name.clone(),
                    g.state.clone(),
                    dash(&g.protocol_type),
                    dash(&g.protocol),
                    g.members.len().to_string(),
                ]);
            }
            let mut text = table.render();
            if groups.is_empty() {
                text.push_str("(no consumer groups)\n");
            }
            print(&text)
        }
    }
}

// --- describe ------------------------------------------------------------------------------

/// One row of `describe`: a partition the group has a committed offset in or a member holds.
#[derive(Debug, PartialEq, Eq)]
struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: Option<i64>,
    /// Index into the group's members.
    owner: Option<usize>,
}

impl PartitionRow {
    fn lag(&self) -> Option<i64> {
        Some(self.log_end? - self.committed?)
    }
}

fn describe(connection: &Connection, output: OutputFormat, args: &DescribeArgs) -> Result<()> {
    let group = args.group.as_str();
    let consumer = group_consumer(connection, group, true)?;
    let metadata = fetch_metadata(consumer.client(), connection, None)?;
    let description = describe_groups(consumer.client(), connection, Some(group))?
        .into_iter()
        .find(|g| g.name == group);
    let committed = committed_offsets(&consumer, connection, group, &all_partitions(&metadata))?;
    let Some(description) = description.or_else(|| {
        // Offsets without a listed group: it was removed between the two requests, or the
        // cluster lists groups differently. Show the offsets.
        (!committed.is_empty()).then(|| GroupDescription {
            name: group.to_string(),
            state: "Dead".to_string(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
            listed: false,
        })
    }) else {
        return Err(Error::GroupNotFound {
            group: group.to_string(),
        });
    };

    let mut owners: BTreeMap<Tp, usize> = BTreeMap::new();
    for (i, member) in description.members.iter().enumerate() {
        if let Some(Ok(assignment)) = &member.assignment {
            for t in &assignment.topics {
                for &p in &t.partitions {
                    owners.insert((t.topic.clone(), p), i);
                }
            }
        }
    }
    let shown: BTreeSet<Tp> = committed.keys().chain(owners.keys()).cloned().collect();
    let existing: Vec<Tp> = shown
        .iter()
        .filter(|(t, p)| partition_exists(&metadata, t, *p))
        .cloned()
        .collect();
    let log_ends = list_offsets(&consumer, connection, &existing, Offset::End)?;
    let rows: Vec<PartitionRow> = shown
        .into_iter()
        .map(|tp| PartitionRow {
            committed: committed.get(&tp).copied(),
            log_end: log_ends.get(&tp).copied().flatten(),
            owner: owners.get(&tp).copied(),
            topic: tp.0,
            partition: tp.1,
        })
        .collect();
    let total_lag: i64 = rows.iter().filter_map(PartitionRow::lag).sum();
    let coordinator = coordinator(&consumer, connection, &metadata);
    render_description(output, &description, coordinator.as_ref(), &rows, total_lag)
}

/// The group's coordinator: broker id (when the address is a known broker's) and address.
#[derive(Debug)]
struct Coordinator {
    id: Option<i32>,
    host: String,
    port: Option<u16>,
}

fn render_description(
    output: OutputFormat,
    group: &GroupDescription,
    coordinator: Option<&Coordinator>,
    rows: &[PartitionRow],
    total_lag: i64,
) -> Result<()> {
    match output {
        OutputFormat::Json => description_json(group, coordinator, rows, total_lag),
        OutputFormat::Table => description_table(group, coordinator, rows, total_lag),
    }
}

fn description_json(
    group: &GroupDescription,
    coordinator: Option<&Coordinator>,
    rows: &[PartitionRow],
    total_lag: i64,
) -> Result<()> {
    let member = |row: &PartitionRow| row.owner.map(|i| &group.members[i]);
    print_json(&json!({
        "group": group.name,
        "state": group.state,
        "protocol_type": non_empty(&group.protocol_type),
        "protocol": non_empty(&group.protocol),
        "coordinator": coordinator.map(|c| json!({"id": c.id, "host": c.host, "port": c.port})),
        "members": group.members.iter().map(|m| json!({
            "member_id": m.id,
            "client_id": m.client_id,
            "host": m.host,
            "assignment": match &m.assignment {
                Some(Ok(a)) => Value::Array(a.topics.iter().map(|t| json!({
                    "topic": t.topic, "partitions": t.partitions,
                })).collect()),
                _ => Value::Null,
            },
            "assignment_error": match &m.assignment {
                Some(Err(e)) => Value::String(e.clone()),
                _ => Value::Null,
            },
        })).collect::<Vec<_>>(),
        "partitions": rows.iter().map(|r| json!({
            "topic": r.topic,
            "partition": r.partition,
            "committed": r.committed,
            "log_end": r.log_end,
            "lag": r.lag(),
            "member_id": member(r).map(|m| &m.id),
            "client_id": member(r).map(|m| &m.client_id),
            "host": member(r).map(|m| &m.host),
        })).collect::<Vec<_>>(),
        "total_lag": total_lag,
        "note": group.members_hidden().then_some(NOT_CLASSIC),
    }))
}

fn description_table(
    group: &GroupDescription,
    coordinator: Option<&Coordinator>,
    rows: &[PartitionRow],
    total_lag: i64,
) -> Result<()> {
    let coordinator = match coordinator {
        Some(Coordinator {
            id: Some(id),
            host,
            port: Some(port),
        }) => {
            format!("{id} ({host}:{port})")
        }
        Some(c) => c.host.clone(),
        None => "unknown".to_string(),
    };
    let members = if group.members_hidden() {
        "members unknown".to_string()
    } else {
        format!("{} member(s)", group.members.len())
    };
    let mut text = format!(
        "group {}: {}, protocol {} ({}), coordinator {coordinator}, {members}, total lag {total_lag}\n",
        group.name,
        group.state,
        dash(&group.protocol),
        dash(&group.protocol_type),
    );
    if group.members_hidden() {
        text.push_str(&format!("note: {NOT_CLASSIC}\n"));
    }
    text.push_str(&rows_table(group, rows));
    text.push_str(&members_table(group));
    print(&text)
}

/// The partitions: committed offset, log end, lag and owner.
fn rows_table(group: &GroupDescription, rows: &[PartitionRow]) -> String {
    let member = |row: &PartitionRow| row.owner.map(|i| &group.members[i]);
    let mut text = String::new();
    if rows.is_empty() {
        text.push_str("\nno committed offsets and no assigned partitions\n");
    } else {
        let mut table = Table::new(vec![
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "MEMBER",
            "CLIENT-ID",
            "HOST",
        ]);
        let or_dash = |n: Option<i64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
        for r in rows {
            let m = member(r);
            table.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                or_dash(r.committed),
                or_dash(r.log_end),
                or_dash(r.lag()),
                m.map_or_else(|| "-".to_string(), |m| m.id.clone()),
                m.map_or_else(|| "-".to_string(), |m| m.client_id.clone()),
                m.map_or_else(|| "-".to_string(), |m| m.host.clone()),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}

/// The members and their assignments.
fn members_table(group: &GroupDescription) -> String {
    let mut text = String::new();
    if !group.members.is_empty() {
        let mut table = Table::new(vec!["MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
        for m in &group.members {
            let assignment = match &m.assignment {
                Some(Ok(a)) if a.topics.is_empty() => "none".to_string(),
                Some(Ok(a)) => a
                    .topics
                    .iter()
                    .map(|t| {
                        let ps: Vec<String> = t.partitions.iter().map(i32::to_string).collect();
                        format!("{}:{}", t.topic, ps.join(","))
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(Err(e)) => format!("(not decodable: {e})"),
                None => format!("(protocol type {})", dash(&group.protocol_type)),
            };
            table.row(vec![
                m.id.clone(),
                m.client_id.clone(),
                m.host.clone(),
                assignment,
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}

/// Waits (bounded) for librdkafka's statistics to name the coordinator's address, and finds
/// its broker id in the metadata.
fn coordinator(
    consumer: &BaseConsumer<GroupContext>,
    connection: &Connection,
    metadata: &Metadata,
) -> Option<Coordinator> {
    let deadline = Instant::now() + COORDINATOR_WAIT_MAX.min(connection.request_timeout);
    let address = loop {
        if let Some(address) = lock(&consumer.context().coordinator).clone() {
            break address;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return None;
        }
        // Serves the statistics events; a consumer without an assignment gets no records.
        if let Some(Err(error)) = consumer.poll(remaining.min(POLL_SLICE)) {
            tracing::debug!(%error, "while waiting for the coordinator");
        }
    };
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse::<u16>().ok()),
        None => (address.clone(), None),
    };
    let id = metadata
        .brokers()
        .iter()
        .find(|b| b.host() == host && Some(b.port()) == port.map(i32::from))
        .map(|b| b.id());
    Some(Coordinator { id, host, port })
}

// --- reset-offsets -------------------------------------------------------------------------

/// Where one partition's committed offset goes, and why if it is not exactly what was asked.
#[derive(Debug, PartialEq, Eq)]
pub struct Move {
    pub new: i64,
    pub note: Option<&'static str>,
}

/// The new offset of one partition. `at_time` is the answer to a timestamp lookup: the first
/// offset at or after the time, `None` when no record is that recent. The result lies within
/// `log_start..=log_end`. Refused (with the reason) only for `--shift-by` without a committed
/// offset to shift.
pub fn plan_move(
    to: ResetTo,
    current: Option<i64>,
    log_start: i64,
    log_end: i64,
    at_time: Option<i64>,
) -> std::result::Result<Move, &'static str> {
    let clamp = |wanted: i64| {
        if wanted < log_start {
            Move {
                new: log_start,
                note: Some("below the log start: moved to it"),
            }
        } else if wanted > log_end {
            Move {
                new: log_end,
                note: Some("past the log end: moved to it"),
            }
        } else {
            Move {
                new: wanted,
                note: None,
            }
        }
    };
    Ok(match to {
        ResetTo::Earliest => clamp(log_start),
        ResetTo::Latest => clamp(log_end),
        ResetTo::Offset(offset) => clamp(offset),
        ResetTo::Datetime(_) => match at_time {
            Some(offset) => clamp(offset),
            None => Move {
                new: log_end,
                note: Some("no record at or after that time: the log end"),
            },
        },
        ResetTo::ShiftBy(n) => match current {
            Some(current) => clamp(current.saturating_add(n)),
            None => return Err("no committed offset to shift"),
        },
    })
}

/// One partition of the plan `reset-offsets` prints.
#[derive(Debug)]
struct PlannedReset {
    topic: String,
    partition: i32,
    current: Option<i64>,
    log_start: i64,
    log_end: i64,
    next: Move,
}

/// Refuses a reset while the group has members (they would overwrite it); warns when they
/// cannot be seen (a KIP-848 group).
fn ensure_group_idle(
    consumer: &BaseConsumer<GroupContext>,
    connection: &Connection,
    group: &str,
) -> Result<()> {
    if let Some(description) = describe_groups(consumer.client(), connection, Some(group))?
        .into_iter()
        .find(|g| g.name == group)
    {
        ensure_inactive(&description)?;
        if description.members_hidden() {
            eprintln!(
                "warning: group {group}: {NOT_CLASSIC}. So it cannot be checked for members here; if it has any, the broker refuses the commit (UNKNOWN_MEMBER_ID)."
            );
        }
    }
    Ok(())
}

fn reset_offsets(connection: &Connection, output: OutputFormat, args: &ResetArgs) -> Result<()> {
    let group = args.group.as_str();
    let to = args.target();
    let consumer = Arc::new(group_consumer(connection, group, false)?);
    let metadata = fetch_metadata(consumer.client(), connection, None)?;
    ensure_group_idle(&consumer, connection, group)?;

    let (partitions, committed) = if args.all_topics {
        let committed =
            committed_offsets(&consumer, connection, group, &all_partitions(&metadata))?;
        if committed.is_empty() {
            return Err(Error::invalid(
                format!("--all-topics for group {group}"),
                "the group has no committed offsets in any topic; name the partitions with --topic TOPIC[:P,P...]",
            ));
        }
        (committed.keys().cloned().collect::<Vec<_>>(), committed)
    } else {
        let partitions = resolve_partitions(&metadata, &args.topics)?;
        let committed = committed_offsets(&consumer, connection, group, &partitions)?;
        (partitions, committed)
    };

    let log_starts = list_offsets(&consumer, connection, &partitions, Offset::Beginning)?;
    let log_ends = list_offsets(&consumer, connection, &partitions, Offset::End)?;
    let at_times = match to {
        ResetTo::Datetime(ms) => {
            list_offsets(&consumer, connection, &partitions, Offset::Offset(ms))?
        }
        _ => BTreeMap::new(),
    };
    let mut plan = Vec::with_capacity(partitions.len());
    let mut refused = Vec::new();
    for tp in &partitions {
        let bound = |offsets: &BTreeMap<Tp, Option<i64>>, which: &str| {
            offsets.get(tp).copied().flatten().ok_or_else(|| {
                Error::invalid(
                    format!("reading the {which} of {}/{}", tp.0, tp.1),
                    "the broker returned no offset",
                )
            })
        };
        let (log_start, log_end) = (
            bound(&log_starts, "log start")?,
            bound(&log_ends, "log end")?,
        );
        let current = committed.get(tp).copied();
        let at_time = at_times.get(tp).copied().flatten();
        match plan_move(to, current, log_start, log_end, at_time) {
            Ok(next) => plan.push(PlannedReset {
                topic: tp.0.clone(),
                partition: tp.1,
                current,
                log_start,
                log_end,
                next,
            }),
            Err(_) => refused.push(format!("{}/{}", tp.0, tp.1)),
        }
    }
    if !refused.is_empty() {
        return Err(Error::invalid(
            format!("--shift-by for group {group}"),
            format!(
                "the group has no committed offset to shift in {}; reset those with --to-earliest, --to-latest, --to-offset or --to-datetime",
                refused.join(", ")
            ),
        ));
    }

    if args.execute {
        let offsets: Vec<(Tp, i64)> = plan
            .iter()
            .map(|r| ((r.topic.clone(), r.partition), r.next.new))
            .collect();
        commit(&consumer, connection, group, &offsets)?;
    }
    render_plan(output, group, to, args.execute, &plan)
}

/// Refuses a group with members: Kafka only takes offsets from outside an empty group, and
/// moving a live consumer's offsets under it would be overwritten by its next commit anyway.
fn ensure_inactive(group: &GroupDescription) -> Result<()> {
    if group.members.is_empty() && matches!(group.state.as_str(), "Empty" | "Dead") {
        return Ok(());
    }
    Err(Error::invalid(
        format!("resetting the offsets of group {}", group.name),
        format!(
            "the group is {} with {} member(s), and offsets can only be reset while it has none: stop the group's consumers first (`weir group describe {}` lists them)",
            group.state,
            group.members.len(),
            group.name
        ),
    ))
}

/// The partitions `--topic` names, checked against the metadata, sorted and without duplicates.
fn resolve_partitions(metadata: &Metadata, topics: &[TopicPartitions]) -> Result<Vec<Tp>> {
    let mut out = BTreeSet::new();
    for spec in topics {
        let name = spec.topic.as_str();
        let topic = find_topic(metadata, name)?;
        let count = i32::try_from(topic.partitions().len())
            .map_err(|e| Error::invalid(format!("topic {name}"), e.to_string()))?;
        match &spec.partitions {
            None => out.extend((0..count).map(|p| (name.to_string(), p))),
            Some(partitions) => {
                for &p in partitions {
                    if p >= count {
                        return Err(Error::PartitionNotFound {
                            topic: name.to_string(),
                            partition: p,
                            partitions: count,
                        });
                    }
                    out.insert((name.to_string(), p));
                }
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Commits offsets from outside the group and waits (bounded) for the broker's answer.
///
/// The binding delivers no result for an asynchronous commit (librdkafka reports those only
/// to an `offset_commit_cb`, which it does not set), and a synchronous one is bounded only by
/// librdkafka's own timeouts (`session.timeout.ms` while no coordinator is known, then
/// `socket.timeout.ms` per attempt). So the synchronous commit runs on its own thread and we
/// wait for it with the request timeout; on a timeout that thread is left to finish or to die
/// with the process, which exits right after reporting it.
fn commit(
    consumer: &Arc<BaseConsumer<GroupContext>>,
    connection: &Connection,
    group: &str,
    offsets: &[(Tp, i64)],
) -> Result<()> {
    let what = format!("committing the offsets of group {group}");
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|e| Error::kafka(format!("{what} ({topic}/{partition})"), e))?;
    }
    let (done, answer) = std::sync::mpsc::sync_channel(1);
    let worker = Arc::clone(consumer);
    std::thread::Builder::new()
        .name("weir-group-commit".to_string())
        .spawn(move || {
            // The receiver is gone only after a timeout, which was reported already.
            let _ = done.send(worker.commit(&tpl, CommitMode::Sync));
        })
        .map_err(|e| Error::io("starting the commit thread", e))?;
    match answer.recv_timeout(connection.request_timeout) {
        Ok(result) => result.map_err(|e| kafka_error(connection, &what, e)),
        Err(RecvTimeoutError::Timeout) => Err(connection.timed_out(what)),
        Err(RecvTimeoutError::Disconnected) => Err(Error::Panicked { what: "commit" }),
    }
}

fn render_plan(
    output: OutputFormat,
    group: &str,
    to: ResetTo,
    executed: bool,
    plan: &[PlannedReset],
) -> Result<()> {
    match output {
        OutputFormat::Json => print_json(&json!({
            "group": group,
            "executed": executed,
            "to": match to {
                ResetTo::Earliest => json!({"earliest": true}),
                ResetTo::Latest => json!({"latest": true}),
                ResetTo::Offset(o) => json!({"offset": o}),
                ResetTo::Datetime(ms) => json!({"datetime": format_timestamp_ms(ms), "timestamp_ms": ms}),
                ResetTo::ShiftBy(n) => json!({"shift_by": n}),
            },
            "partitions": plan.iter().map(|r| json!({
                "topic": r.topic,
                "partition": r.partition,
                "current": r.current,
                "new": r.next.new,
                "log_start": r.log_start,
                "log_end": r.log_end,
                "note": r.next.note,
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let mut table = Table::new(vec![
                "TOPIC",
                "PARTITION",
                "CURRENT",
                "NEW",
                "LOG-START",
                "LOG-END",
                "NOTE",
            ]);
            for r in plan {
                table.row(vec![
                    r.topic.clone(),
                    r.partition.to_string(),
                    r.current.map_or_else(|| "-".to_string(), |c| c.to_string()),
                    r.next.new.to_string(),
                    r.log_start.to_string(),
                    r.log_end.to_string(),
                    r.next.note.unwrap_or_default().to_string(),
                ]);
            }
            let mut text = table.render();
            if executed {
                text.push_str(&format!(
                    "\ncommitted the new offsets of group {group} ({} partition(s))\n",
                    plan.len()
                ));
            } else {
                text.push_str(
                    "\ndry run: nothing was committed; add --execute to commit these offsets\n",
                );
            }
            print(&text)
        }
    }
}

// --- delete --------------------------------------------------------------------------------

async fn delete(connection: &Connection, output: OutputFormat, args: DeleteArgs) -> Result<()> {
    let admin = connection.admin()?;
    admin.metadata(None)?;
    // A cluster without group support fails this at once; DeleteGroups would wait for a
    // coordinator until the timeout.
    tokio::task::block_in_place(|| {
        describe_groups(
            admin.client.inner(),
            connection,
            Some(args.groups[0].as_str()),
        )
    })?;
    let mut names: Vec<&str> = Vec::new();
    for g in &args.groups {
        if !names.contains(&g.as_str()) {
            names.push(g);
        }
    }
    let what = if names.len() == 1 {
        format!("deleting group {}", names[0])
    } else {
        format!("deleting {} groups", names.len())
    };
    let results = admin
        .call(
            &what,
            admin
                .client
                .delete_groups(&names, &admin.connection.admin_options()),
        )
        .await?;
    // (group, deleted, refusal)
    let mut outcomes: Vec<(String, bool, Option<RDKafkaErrorCode>)> = Vec::new();
    for result in results {
        outcomes.push(match result {
            Ok(name) => (name, true, None),
            Err((name, RDKafkaErrorCode::GroupIdNotFound)) if args.if_exists => (name, false, None),
            Err((_, RDKafkaErrorCode::OperationTimedOut)) => return Err(connection.timed_out(what)),
            Err((name, code)) => (name, false, Some(code)),
        });
    }
    let failures: Vec<(&str, RDKafkaErrorCode)> = outcomes
        .iter()
        .filter_map(|(name, _, code)| code.map(|c| (name.as_str(), c)))
        .collect();
    print_deleted(output, &outcomes)?;
    match failures.as_slice() {
        [] => Ok(()),
        [(name, code)] => Err(Error::Broker {
            what: format!("deleting group {name}"),
            code: *code,
        }),
        many => Err(Error::invalid(
            format!("deleting {} of {} groups", many.len(), outcomes.len()),
            many.iter()
                .map(|(name, code)| format!("{name}: {code}{}", crate::error::hint(*code)))
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// What DeleteGroups did to each group: deleted, absent (with --if-exists), or refused (the
/// refusals are reported on stderr by the caller).
fn print_deleted(
    output: OutputFormat,
    outcomes: &[(String, bool, Option<RDKafkaErrorCode>)],
) -> Result<()> {
    match output {
        OutputFormat::Json => print_json(&json!({
            "groups": outcomes.iter().map(|(name, deleted, code)| json!({
                "group": name,
                "deleted": deleted,
                "error": code.map(|c| c.to_string()),
                "code": code.map(code_name),
            })).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Table => {
            let mut text = String::new();
            for (name, deleted, code) in outcomes {
                match (deleted, code) {
                    (true, _) => text.push_str(&format!("deleted group {name}\n")),
                    (false, None) => text.push_str(&format!("group {name} does not exist\n")),
                    // Reported below, on stderr.
                    (false, Some(_)) => {}
                }
            }
            print(&text)?;
        }
    }
    Ok(())
}

/// A librdkafka error code as Kafka names it, e.g. NON_EMPTY_GROUP, for scripts.
fn code_name(code: RDKafkaErrorCode) -> String {
    let debug = format!("{code:?}");
    let mut out = String::with_capacity(debug.len() + 8);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

// --- librdkafka plumbing -------------------------------------------------------------------

/// A group as DescribeGroups shows it, copied out of librdkafka's list.
#[derive(Debug)]
struct GroupDescription {
    name: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberDescription>,
    /// ListGroups named it (librdkafka describes only the groups listed).
    listed: bool,
}

/// Why a listed group shows as Dead: DescribeGroups describes classic groups only.
const NOT_CLASSIC: &str = "ListGroups lists this group but DescribeGroups answers Dead: it is not a classic group (most likely a consumer group of Kafka's new protocol, KIP-848, `group.protocol=consumer`), whose members DescribeGroups does not show";

impl GroupDescription {
    /// A group whose members we cannot see: DescribeGroups (all the binding offers) answers
    /// Dead for groups that are not classic, as Kafka 4 does for KIP-848 consumer groups.
    fn members_hidden(&self) -> bool {
        self.listed && self.state == "Dead"
    }
}

#[derive(Debug)]
struct MemberDescription {
    id: String,
    client_id: String,
    host: String,
    /// Decoded for protocol type `consumer`; `None` for other protocol types.
    assignment: Option<std::result::Result<Assignment, String>>,
}

/// ListGroups + DescribeGroups on every broker: all groups, or only `group` (an empty list
/// when it does not exist).
fn describe_groups<C: ClientContext>(
    client: &Client<C>,
    connection: &Connection,
    group: Option<&str>,
) -> Result<Vec<GroupDescription>> {
    let what = match group {
        Some(g) => format!("describing group {g}"),
        None => "listing the consumer groups".to_string(),
    };
    let list = client
        .fetch_group_list(group, connection.request_timeout)
        .map_err(|e| kafka_error(connection, &what, e))?;
    let mut groups = Vec::with_capacity(list.groups().len());
    for g in list.groups() {
        let members = g
            .members()
            .iter()
            .map(|m| MemberDescription {
                id: m.id().to_string(),
                client_id: m.client_id().to_string(),
                host: m.client_host().to_string(),
                assignment: (g.protocol_type() == "consumer").then(|| {
                    Assignment::decode(m.assignment().unwrap_or_default()).map_err(|e| {
                        crate::error::Error::invalid(
                            "decoding a consumer protocol assignment",
                            e.to_string(),
                        )
                        .to_string()
                    })
                }),
            })
            .collect();
        groups.push(GroupDescription {
            name: g.name().to_string(),
            state: g.state().to_string(),
            protocol_type: g.protocol_type().to_string(),
            protocol: g.protocol().to_string(),
            members,
            listed: true,
        });
    }
    Ok(groups)
}

/// The group's committed offsets among `partitions` (OffsetFetch); partitions without one are
/// left out.
fn committed_offsets(
    consumer: &BaseConsumer<GroupContext>,
    connection: &Connection,
    group: &str,
    partitions: &[Tp],
) -> Result<BTreeMap<Tp, i64>> {
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let what = format!("fetching the committed offsets of group {group}");
    let tpl = partition_list(partitions, Offset::Invalid, &what)?;
    let answer = consumer
        .committed_offsets(tpl, connection.request_timeout)
        .map_err(|e| kafka_error(connection, &what, e))?;
    for e in answer.elements() {
        partition_error(connection, &what, e.topic(), e.partition(), e.error())?;
        if let Offset::Offset(offset) = e.offset() {
            out.insert((e.topic().to_string(), e.partition()), offset);
        }
    }
    Ok(out)
}

/// ListOffsets for each partition: `Offset::Beginning` (log start), `Offset::End` (log end)
/// or `Offset::Offset(ms)` (the first offset at or after a timestamp). `None` where the broker
/// has no such offset (no record that recent).
fn list_offsets(
    consumer: &BaseConsumer<GroupContext>,
    connection: &Connection,
    partitions: &[Tp],
    at: Offset,
) -> Result<BTreeMap<Tp, Option<i64>>> {
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let what = match at {
        Offset::Beginning => "reading the log start offsets".to_string(),
        Offset::End => "reading the log end offsets".to_string(),
        Offset::Offset(ms) => format!("looking up the offsets at {}", format_timestamp_ms(ms)),
        other => unreachable!("list_offsets at {other:?}"),
    };
    // librdkafka reads each partition's entry as the ListOffsets timestamp: -2 earliest,
    // -1 latest, else milliseconds.
    let tpl = partition_list(partitions, at, &what)?;
    let answer = consumer
        .offsets_for_times(tpl, connection.request_timeout)
        .map_err(|e| kafka_error(connection, &what, e))?;
    for e in answer.elements() {
        partition_error(connection, &what, e.topic(), e.partition(), e.error())?;
        let offset = match e.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        out.insert((e.topic().to_string(), e.partition()), offset);
    }
    Ok(out)
}

fn partition_list(partitions: &[Tp], offset: Offset, what: &str) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        tpl.add_partition_offset(topic, *partition, offset)
            .map_err(|e| Error::kafka(format!("{what} ({topic}/{partition})"), e))?;
    }
    Ok(tpl)
}

fn partition_error(
    connection: &Connection,
    what: &str,
    topic: &str,
    partition: i32,
    result: KafkaResult<()>,
) -> Result<()> {
    result.map_err(|e| kafka_error(connection, &format!("{what} ({topic}/{partition})"), e))
}

/// Every partition of every topic in the metadata.
fn all_partitions(metadata: &Metadata) -> Vec<Tp> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(move |p| (t.name().to_string(), p.id()))
        })
        .collect()
}

fn partition_exists(metadata: &Metadata, topic: &str, partition: i32) -> bool {
    metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.partitions().iter().any(|p| p.id() == partition))
}

/// A librdkafka error as ours: timeouts say so, a broker's refusal carries its hint.
fn kafka_error(connection: &Connection, what: &str, error: KafkaError) -> Error {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnsupportedFeature) => Error::invalid(
            what,
            "the cluster does not implement the consumer group APIs (ListGroups, DescribeGroups, OffsetFetch, OffsetCommit, DeleteGroups); a cluster without a group coordinator has no consumer groups",
        ),
        Some(
            RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::Partial,
        ) => connection.timed_out(what),
        Some(code) if code as i32 > 0 => Error::Broker {
            what: what.to_string(),
            code,
        },
        _ => Error::kafka(what, error),
    }
}

/// The consumer `describe` and `reset-offsets` use: it carries the group id, so librdkafka
/// finds the group's coordinator and can fetch and commit the group's offsets, but it never
/// subscribes, so it never joins the group.
fn group_consumer(
    connection: &Connection,
    group: &str,
    statistics: bool,
) -> Result<BaseConsumer<GroupContext>> {
    let mut config = connection.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Log end offsets are high watermarks, as Kafka's tool shows them.
        .set("isolation.level", "read_uncommitted")
        .set("allow.auto.create.topics", "false");
    if statistics {
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
    }
    connection.apply_overrides(&mut config);
    config
        .create_with_context(GroupContext::default())
        .map_err(|e| Error::kafka("creating the group client", e))
}

/// Collects the coordinator's address from librdkafka's statistics.
#[derive(Debug, Default)]
struct GroupContext {
    coordinator: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        // librdkafka's logical "GroupCoordinator" broker takes the coordinator's address once
        // FindCoordinator has answered (STATISTICS.md, `brokers`).
        let address = statistics
            .brokers
            .values()
            .find(|b| b.source == "logical" && b.name == "GroupCoordinator")
            .map(|b| b.nodename.clone())
            .filter(|n| !n.is_empty());
        if address.is_some() {
            *lock(&self.coordinator) = address;
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "client error");
    }
}

impl ConsumerContext for GroupContext {}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: GroupCommand,
    }

    fn parse(args: &[&str]) -> std::result::Result<GroupCommand, String> {
        Cli::try_parse_from(std::iter::once("group").chain(args.iter().copied()))
            .map(|cli| cli.command)
            .map_err(|e| e.to_string())
    }

    fn reset(args: &[&str]) -> ResetArgs {
        match parse(args) {
            Ok(GroupCommand::ResetOffsets(args)) => args,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn reset_flags_parse_to_one_target() {
        let a = reset(&["reset-offsets", "g", "--topic", "orders", "--to-earliest"]);
        assert_eq!((a.target(), a.execute), (ResetTo::Earliest, false));
        assert_eq!(a.topics[0].partitions, None);
        let a = reset(&[
            "reset-offsets",
            "g",
            "-t",
            "orders:1,0",
            "-t",
            "b",
            "--to-latest",
            "--execute",
        ]);
        assert_eq!((a.target(), a.execute), (ResetTo::Latest, true));
        assert_eq!(a.topics[0].partitions, Some(vec![0, 1]));
        let a = reset(&["reset-offsets", "g", "--all-topics", "--to-offset", "42"]);
        assert_eq!((a.target(), a.all_topics), (ResetTo::Offset(42), true));
        let a = reset(&["reset-offsets", "g", "--all-topics", "--shift-by", "-3"]);
        assert_eq!(a.target(), ResetTo::ShiftBy(-3));
        let a = reset(&[
            "reset-offsets",
            "g",
            "--all-topics",
            "--to-datetime",
            "2023-11-14T22:13:20Z",
        ]);
        assert_eq!(a.target(), ResetTo::Datetime(1_700_000_000_000));
    }

    #[test]
    fn reset_refusals_say_what_is_allowed() {
        let cases: &[(&[&str], &[&str])] = &[
            // No target: the allowed ones are listed.
            (
                &["reset-offsets", "g", "--topic", "t"],
                &[
                    "--to-earliest",
                    "--to-latest",
                    "--to-offset",
                    "--to-datetime",
                    "--shift-by",
                ],
            ),
            // Two targets.
            (
                &[
                    "reset-offsets",
                    "g",
                    "--topic",
                    "t",
                    "--to-earliest",
                    "--to-latest",
                ],
                &["cannot be used with"],
            ),
            // No partitions named.
            (
                &["reset-offsets", "g", "--to-earliest"],
                &["--topic", "--all-topics"],
            ),
            (
                &[
                    "reset-offsets",
                    "g",
                    "--topic",
                    "t",
                    "--all-topics",
                    "--to-earliest",
                ],
                &["cannot be used with"],
            ),
            (
                &["reset-offsets", "g", "--topic", "t", "--to-offset", "-1"],
                &["0.."],
            ),
            (
                &["reset-offsets", "g", "--topic", "t:x", "--to-earliest"],
                &["TOPIC:PARTITION[,PARTITION...]"],
            ),
            (
                &[
                    "reset-offsets",
                    "g",
                    "--topic",
                    "t",
                    "--to-datetime",
                    "yesterday",
                ],
                &["RFC 3339"],
            ),
            (
                &["reset-offsets", "g", "--topic", "t", "--shift-by", "x"],
                &["invalid value"],
            ),
            (
                &["reset-offsets", "", "--topic", "t", "--to-earliest"],
                &["cannot be empty"],
            ),
        ];
        for (args, wanted) in cases {
            let e = parse(args).unwrap_err();
            for w in *wanted {
                assert!(e.contains(w), "{args:?}: {w:?} not in {e}");
            }
        }
    }

    #[test]
    fn delete_takes_several_groups_and_describe_one() {
        match parse(&["delete", "a", "b", "--if-exists"]) {
            Ok(GroupCommand::Delete(args)) => {
                assert_eq!(
                    (args.groups, args.if_exists),
                    (vec!["a".to_string(), "b".to_string()], true)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["delete"]).unwrap_err().contains("<GROUPS>..."));
        assert!(parse(&["describe"]).unwrap_err().contains("<GROUP>"));
        assert!(matches!(parse(&["list"]), Ok(GroupCommand::List)));
    }

    #[test]
    fn moves_stay_within_the_log_and_say_when_clamped() {
        let plan = |to, current| plan_move(to, current, 10, 100, None);
        assert_eq!(
            plan(ResetTo::Earliest, Some(50)),
            Ok(Move {
                new: 10,
                note: None
            })
        );
        assert_eq!(
            plan(ResetTo::Latest, None),
            Ok(Move {
                new: 100,
                note: None
            })
        );
        assert_eq!(
            plan(ResetTo::Offset(60), None),
            Ok(Move {
                new: 60,
                note: None
            })
        );
        assert_eq!(
            plan(ResetTo::Offset(5), None).map(|m| (m.new, m.note.is_some())),
            Ok((10, true))
        );
        assert_eq!(
            plan(ResetTo::Offset(500), None).map(|m| (m.new, m.note.is_some())),
            Ok((100, true))
        );
        assert_eq!(
            plan(ResetTo::ShiftBy(-20), Some(50)),
            Ok(Move {
                new: 30,
                note: None
            })
        );
        assert_eq!(plan(ResetTo::ShiftBy(-60), Some(50)).map(|m| m.new), Ok(10));
        assert_eq!(
            plan(ResetTo::ShiftBy(i64::MAX), Some(50)).map(|m| m.new),
            Ok(100)
        );
        assert_eq!(
            plan(ResetTo::ShiftBy(1), None),
            Err("no committed offset to shift")
        );
    }

    #[test]
    fn a_time_past_the_last_record_moves_to_the_log_end() {
        let to = ResetTo::Datetime(1_700_000_000_000);
        assert_eq!(
            plan_move(to, None, 0, 9, Some(4)),
            Ok(Move { new: 4, note: None })
        );
        let end = plan_move(to, Some(2), 0, 9, None).unwrap();
        assert_eq!(end.new, 9);
        assert!(end.note.is_some_and(|n| n.contains("log end")));
    }

    #[test]
    fn inactive_means_no_members_and_empty_or_dead() {
        let group = |state: &str, members: usize| GroupDescription {
            name: "g".into(),
            state: state.into(),
            protocol_type: "consumer".into(),
            protocol: String::new(),
            listed: true,
            members: (0..members)
                .map(|i| MemberDescription {
                    id: format!("m{i}"),
                    client_id: "c".into(),
                    host: "/127.0.0.1".into(),
                    assignment: None,
                })
                .collect(),
        };
        assert!(ensure_inactive(&group("Empty", 0)).is_ok());
        assert!(ensure_inactive(&group("Dead", 0)).is_ok());
        for (state, members) in [
            ("Stable", 1),
            ("PreparingRebalance", 0),
            ("CompletingRebalance", 2),
        ] {
            let e = ensure_inactive(&group(state, members))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(state) && e.contains("stop the group's consumers first"),
                "{e}"
            );
        }
    }

    #[test]
    fn lag_needs_both_offsets() {
        let row = |committed, log_end| PartitionRow {
            topic: "t".into(),
            partition: 0,
            committed,
            log_end,
            owner: None,
        };
        assert_eq!(row(Some(3), Some(10)).lag(), Some(7));
        assert_eq!(row(None, Some(10)).lag(), None);
        assert_eq!(row(Some(3), None).lag(), None);
        assert_eq!(row(Some(12), Some(10)).lag(), Some(-2));
    }

    #[test]
    fn error_codes_get_kafkas_names() {
        assert_eq!(
            code_name(RDKafkaErrorCode::NonEmptyGroup),
            "NON_EMPTY_GROUP"
        );
        assert_eq!(
            code_name(RDKafkaErrorCode::GroupIdNotFound),
            "GROUP_ID_NOT_FOUND"
        );
    }
}
