//! librdkafka's admin client, for the topics the client tests write to.

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use std::time::Duration;

/// How long the broker may take to create a topic.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating an admin client")
}

/// Creates `name` with `partitions` partitions, one replica each.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    create_topic_with(bootstrap, name, partitions, 1, &[]).await
}

/// Creates `name` with `partitions` partitions of `replication_factor` replicas and the topic
/// configs `configs` (CreateTopics, as any Kafka client does it).
pub async fn create_topic_with(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut topic = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = admin(bootstrap)?
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(CREATE_TIMEOUT)),
        )
        .await
        .with_context(|| format!("CreateTopics {name}"))?;
    for r in results {
        r.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    Ok(())
}

/// [`create_topic`] for code outside an async runtime; also waits until every partition has a
/// leader.
pub fn create_topic_blocking(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for the admin client")?
        .block_on(create_topic(bootstrap, name, partitions))?;
    crate::wait_topic_leaders(bootstrap, name, partitions as usize, CREATE_TIMEOUT)
}
