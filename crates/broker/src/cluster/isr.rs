//! ISR changes: the one task that takes the shrinks and expansions partitions propose and
//! commits them to the metadata log together.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::decisions::isr_record;
use crate::broker::Broker;
use crate::replica_manager::Partition;
use crate::replication::IsrChange;

/// The one task that proposes ISR changes of the partitions this broker leads: followers that
/// caught up (the fetch path reports them through [`ReplicaManager::propose_isr`]) and, every
/// half `replica.lag.time.max.ms`, followers that stopped keeping up. Changes found together
/// go to the controller in one metadata commit, as Kafka's AlterPartition batches them.
///
/// [`ReplicaManager::propose_isr`]: crate::replica_manager::ReplicaManager::propose_isr
pub(super) async fn isr_manager(
    broker: Arc<Broker>,
    mut proposals: tokio::sync::mpsc::Receiver<crate::replica_manager::IsrProposal>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lag_ms = broker.config.settings().replica_lag_time_max_ms.max(1);
    let mut tick =
        tokio::time::interval(Duration::from_millis((lag_ms as u64 / 2).clamp(50, 5000)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut changes = Vec::new();
        tokio::select! {
            _ = tick.tick() => {
                let now = crate::now_ms();
                for p in broker.replicas.all() {
                    if !p.is_replicated() {
                        continue;
                    }
                    if let Some(change) = p.maybe_shrink_isr(now, lag_ms) {
                        tracing::info!(topic = %p.topic, partition = p.index, isr = ?change.new_isr, "follower fell behind; shrinking the ISR");
                        changes.push((p, change));
                    }
                }
            }
            Some(proposed) = proposals.recv() => changes.push(proposed),
            _ = shutdown.changed() => return,
        }
        while let Ok(proposed) = proposals.try_recv() {
            changes.push(proposed);
        }
        if !changes.is_empty() {
            alter_isr(&broker, changes).await;
        }
    }
}

/// Asks the controller for ISR changes of partitions this broker leads (as AlterPartition
/// does): a partition record with the next partition epoch for each, all in one commit. A
/// change based on a partition state that moved meanwhile is dropped, and a refused commit
/// drops them all; either way the partition may propose again.
async fn alter_isr(broker: &Broker, changes: Vec<(Arc<Partition>, IsrChange)>) {
    let image = broker.image();
    let mut records = Vec::with_capacity(changes.len());
    let mut proposed = Vec::with_capacity(changes.len());
    for (p, change) in changes {
        match isr_record(&image, broker.node_id, &p, &change) {
            Some(record) => {
                records.push(record);
                proposed.push((p, change));
            }
            None => p.isr_change_failed(),
        }
    }
    if records.is_empty() {
        return;
    }
    match broker.commit_metadata_async(records).await {
        Ok(_) => {
            for (p, change) in &proposed {
                tracing::info!(topic = %p.topic, partition = p.index, isr = ?change.new_isr, "ISR changed");
            }
        }
        Err(e) => {
            tracing::debug!(changes = proposed.len(), error = %e, "ISR changes refused");
            for (p, _) in proposed {
                p.isr_change_failed();
            }
        }
    }
}
