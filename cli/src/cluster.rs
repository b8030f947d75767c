//! `weir cluster describe`: brokers, partitions, leaders and the partitions that are under
//! replicated or offline, from the Kafka Metadata API (so it works against any Kafka-compatible
//! cluster).

use crate::client::Connection;
use crate::config::OutputFormat;
use crate::error::Result;
use crate::output::{Table, print, print_json};
use rdkafka::metadata::{Metadata, MetadataBroker};
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show brokers, leaders per broker, and under-replicated or offline partitions.
    Describe,
}

pub async fn run(conn: &Connection, output: OutputFormat, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Describe => describe(conn, output),
    }
}

fn describe(conn: &Connection, output: OutputFormat) -> Result<()> {
    let admin = conn.admin()?;
    let metadata = admin.metadata(None)?;
    let summary = Summary::of(&metadata);
    let mut brokers: Vec<_> = metadata.brokers().iter().collect();
    brokers.sort_by_key(|b| b.id());
    match output {
        OutputFormat::Json => describe_json(&summary, &brokers),
        OutputFormat::Table => describe_table(&summary, &brokers),
    }
}

/// An under-replicated partition: topic, partition, leader (-1: none), replicas, ISR.
type UnderReplicated = (String, i32, i32, Vec<i32>, Vec<i32>);

/// The cluster as Metadata shows it, internal topics left out.
struct Summary {
    topics: usize,
    partitions: usize,
    /// Partitions led, and replicas held, per broker.
    leaders: BTreeMap<i32, usize>,
    replicas: BTreeMap<i32, usize>,
    under: Vec<UnderReplicated>,
    offline: Vec<(String, i32)>,
}

impl Summary {
    fn of(metadata: &Metadata) -> Summary {
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        let mut replicas: BTreeMap<i32, usize> = BTreeMap::new();
        let mut under = Vec::new();
        let mut offline = Vec::new();
        let mut partitions = 0usize;
        for t in metadata.topics() {
            if t.name().starts_with("__") {
                continue;
            }
            for p in t.partitions() {
                partitions += 1;
                for r in p.replicas() {
                    *replicas.entry(*r).or_default() += 1;
                }
                if p.leader() >= 0 {
                    *leaders.entry(p.leader()).or_default() += 1;
                } else {
                    offline.push((t.name().to_string(), p.id()));
                }
                if p.isr().len() < p.replicas().len() {
                    under.push((
                        t.name().to_string(),
                        p.id(),
                        p.leader(),
                        p.replicas().to_vec(),
                        p.isr().to_vec(),
                    ));
                }
            }
        }
        under.sort();
        offline.sort();
        Summary {
            topics: metadata
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__"))
                .count(),
            partitions,
            leaders,
            replicas,
            under,
            offline,
        }
    }
}

fn describe_json(summary: &Summary, brokers: &[&MetadataBroker]) -> Result<()> {
    let Summary {
        topics,
        partitions,
        leaders,
        replicas,
        under,
        offline,
    } = summary;
    print_json(&json!({
        "brokers": brokers.iter().map(|b| json!({
            "id": b.id(),
            "host": b.host(),
            "port": b.port(),
            "leaders": leaders.get(&b.id()).copied().unwrap_or(0),
            "replicas": replicas.get(&b.id()).copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
        "topics": topics,
        "partitions": partitions,
        "under_replicated": under.iter().map(|(t, p, l, r, i)| json!({
            "topic": t, "partition": p, "leader": (*l >= 0).then_some(*l), "replicas": r, "isr": i,
        })).collect::<Vec<_>>(),
        "offline": offline.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
    }))
}

fn describe_table(summary: &Summary, brokers: &[&MetadataBroker]) -> Result<()> {
    let Summary {
        topics,
        partitions,
        leaders,
        replicas,
        under,
        offline,
    } = summary;
    let mut text = format!(
        "{} broker(s), {} topic(s), {partitions} partition(s): {} under-replicated, {} offline\n\n",
        brokers.len(),
        topics,
        under.len(),
        offline.len()
    );
    let mut table = Table::new(vec!["BROKER", "ADDRESS", "LEADERS", "REPLICAS"]);
    for b in brokers {
        table.row(vec![
            b.id().to_string(),
            format!("{}:{}", b.host(), b.port()),
            leaders.get(&b.id()).copied().unwrap_or(0).to_string(),
            replicas.get(&b.id()).copied().unwrap_or(0).to_string(),
        ]);
    }
    text.push_str(&table.render());
    if !under.is_empty() {
        let mut table = Table::new(vec!["UNDER-REPLICATED", "LEADER", "REPLICAS", "ISR"]);
        for (t, p, l, r, i) in under {
            table.row(vec![
                format!("{t}-{p}"),
                if *l >= 0 {
                    l.to_string()
                } else {
                    "none".into()
                },
                ids(r),
                ids(i),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    if !offline.is_empty() {
        text.push_str("\noffline (no leader): ");
        text.push_str(
            &offline
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        text.push('\n');
    }
    print(&text)
}

fn ids(v: &[i32]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
