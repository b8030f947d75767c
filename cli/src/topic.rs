//! `weir topic create|list|describe|alter|delete`: topic administration over the Kafka admin
//! APIs (CreateTopics, Metadata, DescribeConfigs, CreatePartitions, AlterConfigs, DeleteTopics).
//!
//! Alter uses AlterConfigs, the call librdkafka's Rust binding offers; it replaces a topic's
//! whole set of dynamic configs, so `alter` reads the current set, changes it and writes it back.
//! Two concurrent alters of one topic can therefore lose one's change.

use crate::client::{Admin, Connection, one_result};
use crate::config::{KeyValue, OutputFormat, parse_partition_count, parse_topic};
use crate::error::{Error, Result};
use crate::output::{Table, print, print_json};
use rdkafka::admin::{
    AlterConfig, ConfigEntry, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::{Metadata, MetadataPartition, MetadataTopic};
use serde_json::json;
use std::collections::BTreeMap;
use weir_model::TopicName;

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List the topics with their partition counts.
    List(ListArgs),
    /// Show a topic's partitions (leader, replicas, in-sync replicas) and configs.
    Describe(DescribeArgs),
    /// Add partitions or change configs of a topic.
    Alter(AlterArgs),
    /// Delete a topic and its records.
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[arg(value_parser = parse_topic)]
    pub name: TopicName,
    /// Number of partitions (default: the broker's `num.partitions`).
    #[arg(long, short = 'p', value_parser = parse_partition_count)]
    pub partitions: Option<i32>,
    /// Copies of each partition (default: the broker's `default.replication.factor`).
    #[arg(long, short = 'r', value_parser = clap::value_parser!(i32).range(1..=32))]
    pub replication_factor: Option<i32>,
    /// A topic config, e.g. `retention.ms=86400000`; repeat for more.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    pub configs: Vec<KeyValue>,
    /// Succeed without change when the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Include internal topics (names starting with `__`).
    #[arg(long)]
    pub internal: bool,
}

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    #[arg(value_parser = parse_topic)]
    pub name: TopicName,
    /// Also list configs at their default value (the table shows only the others).
    #[arg(long)]
    pub all_configs: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true)
    .args(["partitions", "configs", "delete_configs"])))]
pub struct AlterArgs {
    #[arg(value_parser = parse_topic)]
    pub name: TopicName,
    /// The new, larger partition count (partitions can be added, never removed).
    #[arg(long, short = 'p', value_parser = parse_partition_count)]
    pub partitions: Option<i32>,
    /// Set a topic config, e.g. `retention.ms=86400000`; repeat for more.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    pub configs: Vec<KeyValue>,
    /// Return a topic config to its default; repeat for more.
    #[arg(long = "delete-config", value_name = "KEY")]
    pub delete_configs: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[arg(value_parser = parse_topic)]
    pub name: TopicName,
    /// Succeed without change when the topic does not exist.
    #[arg(long)]
    pub if_exists: bool,
}

pub async fn run(
    connection: &Connection,
    output: OutputFormat,
    command: TopicCommand,
) -> Result<()> {
    let admin = connection.admin()?;
    match command {
        TopicCommand::Create(args) => create(&admin, output, args).await,
        TopicCommand::List(args) => list(&admin, output, args),
        TopicCommand::Describe(args) => describe(&admin, output, args).await,
        TopicCommand::Alter(args) => alter(&admin, output, args).await,
        TopicCommand::Delete(args) => delete(&admin, output, args).await,
    }
}

async fn create(admin: &Admin, output: OutputFormat, args: CreateArgs) -> Result<()> {
    let name = args.name.as_str();
    // Reach the cluster first so an unreachable broker is reported as such, not as a timeout.
    admin.metadata(Some(name))?;
    // -1 asks the broker for its defaults (CreateTopics v4+).
    let mut new_topic = NewTopic::new(
        name,
        args.partitions.unwrap_or(-1),
        TopicReplication::Fixed(args.replication_factor.unwrap_or(-1)),
    );
    for kv in &args.configs {
        new_topic = new_topic.set(&kv.key, &kv.value);
    }
    let what = format!("creating topic {name}");
    let created = match admin.create_topic(&new_topic, &what).await? {
        Ok(()) => true,
        Err(RDKafkaErrorCode::TopicAlreadyExists) if args.if_not_exists => false,
        Err(code) => return Err(Error::Broker { what, code }),
    };
    match output {
        OutputFormat::Json => print_json(&json!({ "topic": name, "created": created })),
        OutputFormat::Table if created => print(&format!("created topic {name}\n")),
        OutputFormat::Table => print(&format!("topic {name} already exists\n")),
    }
}

fn list(admin: &Admin, output: OutputFormat, args: ListArgs) -> Result<()> {
    let metadata = admin.metadata(None)?;
    let mut topics: Vec<&MetadataTopic> = metadata
        .topics()
        .iter()
        .filter(|t| args.internal || !t.name().starts_with("__"))
        .collect();
    topics.sort_by(|a, b| a.name().cmp(b.name()));
    match output {
        OutputFormat::Json => {
            let topics: Vec<_> = topics
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name(),
                        "partitions": t.partitions().len(),
                        "replication_factor": replication_factor(t),
                    })
                })
                .collect();
            print_json(&json!({ "topics": topics }))
        }
        OutputFormat::Table => {
            let mut table = Table::new(vec!["TOPIC", "PARTITIONS", "REPLICATION"]);
            for t in topics {
                table.row(vec![
                    t.name().to_string(),
                    t.partitions().len().to_string(),
                    replication_factor(t).to_string(),
                ]);
            }
            print(&table.render())
        }
    }
}

async fn describe(admin: &Admin, output: OutputFormat, args: DescribeArgs) -> Result<()> {
    let name = args.name.as_str();
    let metadata = admin.metadata(Some(name))?;
    let topic = find_topic(&metadata, name)?;
    let configs = describe_configs(admin, name).await?;
    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|p| p.id());
    match output {
        OutputFormat::Json => describe_json(name, topic, &partitions, &configs),
        OutputFormat::Table => describe_table(name, topic, &partitions, &configs, args.all_configs),
    }
}

fn describe_json(
    name: &str,
    topic: &MetadataTopic,
    partitions: &[&MetadataPartition],
    configs: &[ConfigEntry],
) -> Result<()> {
    let partitions: Vec<_> = partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.id(),
                "leader": (p.leader() >= 0).then_some(p.leader()),
                "replicas": p.replicas(),
                "isr": p.isr(),
                "under_replicated": p.isr().len() < p.replicas().len(),
                "error": p.error().map(|e| RDKafkaErrorCode::from(e).to_string()),
            })
        })
        .collect();
    let configs: Vec<_> = configs
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "value": c.value,
                "source": source_name(&c.source),
                "default": c.is_default,
                "read_only": c.is_read_only,
                "sensitive": c.is_sensitive,
            })
        })
        .collect();
    print_json(&json!({
        "topic": name,
        "partitions": partitions,
        "replication_factor": replication_factor(topic),
        "configs": configs,
    }))
}

fn describe_table(
    name: &str,
    topic: &MetadataTopic,
    partitions: &[&MetadataPartition],
    configs: &[ConfigEntry],
    all_configs: bool,
) -> Result<()> {
    let mut text = format!(
        "topic {name}: {} partition(s), replication factor {}\n\n",
        partitions.len(),
        replication_factor(topic)
    );
    let mut table = Table::new(vec![
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "UNDER-REPLICATED",
        "ERROR",
    ]);
    for p in partitions {
        table.row(vec![
            p.id().to_string(),
            if p.leader() >= 0 {
                p.leader().to_string()
            } else {
                "none".to_string()
            },
            join_ids(p.replicas()),
            join_ids(p.isr()),
            if p.isr().len() < p.replicas().len() {
                "yes".to_string()
            } else {
                String::new()
            },
            p.error()
                .map(|e| RDKafkaErrorCode::from(e).to_string())
                .unwrap_or_default(),
        ]);
    }
    text.push_str(&table.render());
    let shown: Vec<&ConfigEntry> = configs
        .iter()
        .filter(|c| all_configs || !c.is_default)
        .collect();
    if shown.is_empty() {
        text.push_str("\nall configs at their defaults (--all-configs lists them)\n");
    } else {
        let mut table = Table::new(vec!["CONFIG", "VALUE", "SOURCE"]);
        for c in shown {
            table.row(vec![
                c.name.clone(),
                c.value.clone().unwrap_or_else(|| "(sensitive)".to_string()),
                source_name(&c.source).to_string(),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    print(&text)
}

async fn alter(admin: &Admin, output: OutputFormat, args: AlterArgs) -> Result<()> {
    let name = args.name.as_str();
    let metadata = admin.metadata(Some(name))?;
    let current_partitions = i32::try_from(find_topic(&metadata, name)?.partitions().len())
        .map_err(|e| Error::invalid(format!("topic {name}"), e.to_string()))?;
    let mut changes = Vec::new();

    if let Some(wanted) = args.partitions
        && add_partitions(admin, name, current_partitions, wanted).await?
    {
        changes.push(json!({ "partitions": { "from": current_partitions, "to": wanted } }));
    }

    if !args.configs.is_empty() || !args.delete_configs.is_empty() {
        alter_configs(admin, name, &args).await?;
        for kv in &args.configs {
            changes.push(json!({ "set": { "name": kv.key, "value": kv.value } }));
        }
        for key in &args.delete_configs {
            changes.push(json!({ "deleted": key }));
        }
    }

    match output {
        OutputFormat::Json => print_json(&json!({ "topic": name, "changes": changes })),
        OutputFormat::Table if changes.is_empty() => print(&format!(
            "topic {name} already has {current_partitions} partitions; nothing changed\n"
        )),
        OutputFormat::Table => {
            let mut text = String::new();
            if let Some(p) = args.partitions.filter(|p| *p > current_partitions) {
                text.push_str(&format!(
                    "topic {name}: partitions {current_partitions} -> {p}\n"
                ));
            }
            for kv in &args.configs {
                text.push_str(&format!("topic {name}: set {}={}\n", kv.key, kv.value));
            }
            for key in &args.delete_configs {
                text.push_str(&format!("topic {name}: {key} back to default\n"));
            }
            print(&text)
        }
    }
}

/// Grows the topic to `wanted` partitions; refuses to shrink it. Returns whether it grew.
async fn add_partitions(
    admin: &Admin,
    name: &str,
    current_partitions: i32,
    wanted: i32,
) -> Result<bool> {
    if wanted < current_partitions {
        return Err(Error::invalid(
            format!("--partitions {wanted}"),
            format!(
                "topic {name} has {current_partitions} partitions; partitions can be added, never removed"
            ),
        ));
    }
    if wanted == current_partitions {
        return Ok(false);
    }
    let count =
        usize::try_from(wanted).map_err(|e| Error::invalid("--partitions", e.to_string()))?;
    let new_partitions = NewPartitions::new(name, count);
    let what = format!("adding partitions to {name}");
    let results = admin
        .call(
            &what,
            admin
                .client
                .create_partitions([&new_partitions], &admin.connection.admin_options()),
        )
        .await?;
    one_result(results, &what)?.map_err(|code| Error::Broker { what, code })?;
    Ok(true)
}

/// Sets and deletes topic configs, keeping the other dynamic ones (AlterConfigs replaces the
/// whole set).
async fn alter_configs(admin: &Admin, name: &str, args: &AlterArgs) -> Result<()> {
    let current = describe_configs(admin, name).await?;
    let mut dynamic = BTreeMap::new();
    for entry in current
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
    {
        let value = entry.value.clone().ok_or_else(|| {
            Error::invalid(
                format!("altering {name}"),
                format!(
                    "config {} is sensitive, so AlterConfigs would drop it; change it with a tool that has IncrementalAlterConfigs",
                    entry.name
                ),
            )
        })?;
        dynamic.insert(entry.name.clone(), value);
    }
    let known: std::collections::HashSet<&str> = current.iter().map(|e| e.name.as_str()).collect();
    for key in &args.delete_configs {
        if !known.contains(key.as_str()) {
            return Err(Error::invalid(
                format!("--delete-config {key}"),
                format!(
                    "topic {name} has no config {key}; `weir topic describe {name} --all-configs` lists them"
                ),
            ));
        }
        dynamic.remove(key);
    }
    for kv in &args.configs {
        dynamic.insert(kv.key.clone(), kv.value.clone());
    }
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (k, v) in &dynamic {
        alter = alter.set(k, v);
    }
    let what = format!("altering configs of {name}");
    let results = admin
        .call(
            &what,
            admin
                .client
                .alter_configs([&alter], &admin.connection.admin_options()),
        )
        .await?;
    match results.into_iter().next() {
        Some(Ok(_)) => {}
        Some(Err((_, code))) => return Err(Error::Broker { what, code }),
        None => return Err(Error::invalid(what, "the broker returned no result")),
    }
    Ok(())
}

async fn delete(admin: &Admin, output: OutputFormat, args: DeleteArgs) -> Result<()> {
    let name = args.name.as_str();
    admin.metadata(Some(name))?;
    let what = format!("deleting topic {name}");
    let results = admin
        .call(
            &what,
            admin
                .client
                .delete_topics(&[name], &admin.connection.admin_options()),
        )
        .await?;
    let deleted = match one_result(results, &what)? {
        Ok(()) => true,
        Err(RDKafkaErrorCode::UnknownTopicOrPartition) if args.if_exists => false,
        Err(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            return Err(Error::TopicNotFound {
                topic: name.to_string(),
            });
        }
        Err(code) => return Err(Error::Broker { what, code }),
    };
    match output {
        OutputFormat::Json => print_json(&json!({ "topic": name, "deleted": deleted })),
        OutputFormat::Table if deleted => print(&format!("deleted topic {name}\n")),
        OutputFormat::Table => print(&format!("topic {name} does not exist\n")),
    }
}

/// The topic's configs from DescribeConfigs, sorted by name.
async fn describe_configs(admin: &Admin, name: &str) -> Result<Vec<ConfigEntry>> {
    let what = format!("describing configs of {name}");
    let results = admin
        .call(
            &what,
            admin.client.describe_configs(
                [&ResourceSpecifier::Topic(name)],
                &admin.connection.admin_options(),
            ),
        )
        .await?;
    match results.into_iter().next() {
        Some(Ok(resource)) => {
            let mut entries = resource.entries;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        }
        Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) => Err(Error::TopicNotFound {
            topic: name.to_string(),
        }),
        Some(Err(code)) => Err(Error::Broker { what, code }),
        None => Err(Error::invalid(what, "the broker returned no result")),
    }
}

/// The single result of a one-topic admin request: `Ok(Ok)` done, `Ok(Err(code))` refused.
/// The topic in a one-topic metadata answer, or why it is not there.
pub fn find_topic<'m>(metadata: &'m Metadata, name: &str) -> Result<&'m MetadataTopic> {
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| Error::TopicNotFound {
            topic: name.to_string(),
        })?;
    match topic.error().map(RDKafkaErrorCode::from) {
        None => Ok(topic),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Err(Error::TopicNotFound {
            topic: name.to_string(),
        }),
        Some(code) => Err(Error::Broker {
            what: format!("looking up topic {name}"),
            code,
        }),
    }
}

fn replication_factor(topic: &MetadataTopic) -> usize {
    topic
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .max()
        .unwrap_or(0)
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn source_name(source: &ConfigSource) -> &'static str {
    match source {
        ConfigSource::Unknown => "unknown",
        ConfigSource::DynamicTopic => "topic",
        ConfigSource::DynamicBroker => "broker",
        ConfigSource::DynamicDefaultBroker => "cluster-default",
        ConfigSource::StaticBroker => "broker-static",
        ConfigSource::Default => "default",
    }
}
