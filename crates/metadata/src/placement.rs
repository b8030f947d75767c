//! Where a new topic's replicas go: spread over brokers (over racks when brokers have racks),
//! leaders balanced. Pure: the caller passes the brokers and a starting point.
//!
//! This is Kafka's rack-aware round robin (`AdminUtils.assignReplicasToBrokers` with a fixed
//! start index), so a Weir cluster places replicas where a Kafka cluster would:
//!
//! 1. Sort the brokers by id. If any broker has a rack, reorder them so that racks alternate:
//!    the first broker of each rack (racks in name order), then the second of each, and so on.
//!    Brokers without a rack count as one more rack of their own.
//! 2. Partition `p`'s first replica, its preferred leader, is `list[(start + p) % n]`, so
//!    leaders go round the brokers and are balanced within one per broker.
//! 3. Its other replicas follow at a shift from the first, the shift growing by one every `n`
//!    partitions so that followers of a broker's leaders do not always land on the same
//!    brokers. A candidate is skipped while it is already a replica of the partition, or while
//!    its rack already holds a replica and some rack still holds none: replicas sit on
//!    distinct brokers and, as far as there are racks, on distinct racks.

use crate::state::MetadataError;
use std::collections::BTreeMap;
use weir_model::BrokerId;
use weir_model::limits::PARTITIONS_PER_TOPIC_MAX;

/// Replica lists for `partitions` new partitions with `replication_factor` replicas each over
/// `brokers` (id and rack; duplicates of an id are ignored). The coordinator passes the live
/// brokers, and as `start` something that moves from one call to the next (the number of
/// topics for CreateTopic, the existing partition count for CreatePartitions) so that
/// successive topics do not all start on the same broker.
///
/// Errors: InvalidPartitions unless `1 <= partitions <= PARTITIONS_PER_TOPIC_MAX`;
/// InvalidReplicationFactor unless `1 <= replication_factor <= ` the number of brokers.
pub fn assign(
    brokers: &[(BrokerId, Option<String>)],
    partitions: i32,
    replication_factor: i32,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>, MetadataError> {
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(MetadataError::InvalidPartitions(format!(
            "{partitions} partitions; it must be 1 to {PARTITIONS_PER_TOPIC_MAX}"
        )));
    }
    let list = arrange(brokers);
    let n = list.len();
    let rf = usize::try_from(replication_factor)
        .ok()
        .filter(|rf| (1..=n).contains(rf))
        .ok_or_else(|| {
            MetadataError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor}; it must be at least 1 and at most \
                 the {n} available brokers"
            ))
        })?;
    let racks = list
        .iter()
        .map(|(_, rack)| *rack)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let start = start % n;
    let mut shift = start;
    let mut assignment = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (start + p) % n;
        let mut replicas = vec![list[first].0];
        let mut used_racks = vec![list[first].1];
        let mut k = 0;
        while replicas.len() < rf {
            // Over n - 1 consecutive values of k the shifts visit every other broker, so a
            // free broker (on a free rack while one exists) is found within n - 1 steps.
            assert!(k < n * rf, "placement found no broker for a replica");
            let (id, rack) = list[follower(first, shift * racks, k, n)];
            k += 1;
            let rack_ok = !used_racks.contains(&rack) || used_racks.len() >= racks;
            if rack_ok && !replicas.contains(&id) {
                replicas.push(id);
                if !used_racks.contains(&rack) {
                    used_racks.push(rack);
                }
            }
        }
        assignment.push(replicas);
    }
    Ok(assignment)
}

/// The brokers sorted by id, then interleaved by rack if any has one. The rack is returned as
/// an index (one for each distinct rack, one more for "no rack").
fn arrange(brokers: &[(BrokerId, Option<String>)]) -> Vec<(BrokerId, usize)> {
    let mut by_id: BTreeMap<BrokerId, Option<&str>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_id.entry(*id).or_insert(rack.as_deref());
    }
    if by_id.values().all(Option::is_none) {
        return by_id.into_keys().map(|id| (id, 0)).collect();
    }
    // `None` sorts before every rack name: the rack-less brokers form rack 0.
    let mut by_rack: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for (id, rack) in &by_id {
        by_rack.entry(*rack).or_default().push(*id);
    }
    let racks: Vec<Vec<BrokerId>> = by_rack.into_values().collect();
    let longest = racks.iter().map(Vec::len).max().unwrap_or(0);
    let mut list = Vec::with_capacity(by_id.len());
    for i in 0..longest {
        for (rack, ids) in racks.iter().enumerate() {
            if let Some(id) = ids.get(i) {
                list.push((*id, rack));
            }
        }
    }
    list
}

/// Kafka's `replicaIndex`: the `k`-th follower candidate of a partition whose first replica is
/// at `first`, never `first` itself (needs `n >= 2`).
fn follower(first: usize, shift: usize, k: usize, n: usize) -> usize {
    let step = 1 + (shift + k) % (n - 1);
    (first + step) % n
}
