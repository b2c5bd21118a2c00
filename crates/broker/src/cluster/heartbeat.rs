//! Heartbeats and registration of this broker with the active controller, the controller's
//! periodic work while this member leads, and controlled shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_metadata::quorum::QuorumMetadataLog;
use strom_metadata::{MetadataLog, MetadataRecord, TopicInfo};
use tokio::sync::watch;

use super::decisions::{
    complete_reassignments, elect_offline, fence_records, preferred_elections, unclean_allowed,
};
use crate::broker::Broker;
use crate::config::BrokerConfig;

/// Tells the active controller this broker is alive; registers again if it was fenced.
pub(super) async fn heartbeats(
    broker: Arc<Broker>,
    q: Arc<QuorumMetadataLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every =
        Duration::from_millis(broker.config.settings().broker_heartbeat_interval_ms.max(1) as u64);
    let session =
        Duration::from_millis(broker.config.settings().broker_session_timeout_ms.max(1) as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when heartbeats fail, and whether that has been reported.
    let mut failing: Option<(Instant, bool)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match q.heartbeat(broker.node_id).await {
            Ok(()) => {
                if let Some((since, true)) = failing.take() {
                    tracing::info!(
                        failed_for_ms = since.elapsed().as_millis() as u64,
                        "heartbeats reach the controller again"
                    );
                }
                let fenced = broker
                    .image()
                    .brokers
                    .get(&broker.node_id)
                    .is_none_or(|b| b.fenced);
                if fenced && !broker.is_shutting_down() {
                    tracing::info!(
                        node_id = broker.node_id,
                        "fenced by the controller; registering again"
                    );
                    if let Err(e) = broker.register().await {
                        tracing::warn!(error = %e, "cannot register with the controller");
                    }
                }
            }
            Err(e) => {
                let (since, reported) = failing.get_or_insert((Instant::now(), false));
                if !*reported && since.elapsed() >= session {
                    *reported = true;
                    tracing::warn!(
                        error = %e,
                        failed_for_ms = since.elapsed().as_millis() as u64,
                        "heartbeats do not reach the controller; it fences this broker after broker.session.timeout.ms"
                    );
                } else {
                    tracing::debug!(error = %e, "heartbeat not delivered");
                }
            }
        }
    }
}

/// The active controller's periodic work (only while this member leads the quorum): fence
/// brokers that stopped heartbeating and elect leaders where there are none.
pub async fn controller(
    config: Arc<BrokerConfig>,
    q: Arc<QuorumMetadataLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let session = Duration::from_millis(config.settings().broker_session_timeout_ms.max(1) as u64);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<Instant> = None;
    let rebalance_every = config.settings().auto_leader_rebalance_enable.then(|| {
        Duration::from_secs(
            config
                .settings()
                .leader_imbalance_check_interval_seconds
                .max(1) as u64,
        )
    });
    let mut last_rebalance = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !q.is_leader() {
            leading_since = None;
            continue;
        }
        let now = Instant::now();
        // A new active controller gives every broker a full session to show up.
        let since = *leading_since.get_or_insert(now);
        let image = q.image();
        let beats = q.last_heartbeats();
        let unclean = |t: &TopicInfo| unclean_allowed(&config, t);
        let expired = image.live_brokers().find(|b| {
            let last = beats.get(&b.broker_id).map_or(since, |t| (*t).max(since));
            now.duration_since(last) > session
        });
        let mut records = match expired {
            Some(b) => {
                tracing::warn!(
                    broker = b.broker_id,
                    "broker missed its heartbeats; fencing it"
                );
                fence_records(&image, b.broker_id, unclean)
            }
            None => elect_offline(&image, unclean),
        };
        if records.is_empty() {
            records = complete_reassignments(&image);
            if !records.is_empty() {
                tracing::info!(partitions = records.len(), "reassignment complete");
            }
        }
        if records.is_empty()
            && rebalance_every.is_some_and(|every| last_rebalance.elapsed() >= every)
        {
            last_rebalance = Instant::now();
            records = preferred_elections(&image);
            if !records.is_empty() {
                tracing::info!(
                    partitions = records.len(),
                    "moving leadership back to preferred replicas"
                );
            }
        }
        if records.is_empty() {
            continue;
        }
        let elections = records
            .iter()
            .filter(|r| matches!(r, MetadataRecord::Partition { .. }))
            .count();
        match q.append_async(records).await {
            Ok(_) => tracing::info!(
                partitions = elections,
                "controller changed partition leadership"
            ),
            Err(e) => tracing::debug!(error = %e, "controller change not applied; trying again"),
        }
    }
}

/// Moves leadership away from this broker before it stops (controlled shutdown): it fences
/// itself, so the controller elects other leaders from the ISRs now rather than after the
/// session timeout.
///
/// It tries for at most `broker.session.timeout.ms`: by then a live controller fences this
/// broker anyway, and without a quorum (the last nodes of a cluster stopping) nothing can be
/// committed at all, so waiting longer would only delay the stop.
pub async fn controlled_shutdown(broker: &Arc<Broker>) {
    if broker.quorum.is_none() || !broker.config.settings().controlled_shutdown_enable {
        return;
    }
    let session =
        Duration::from_millis(broker.config.settings().broker_session_timeout_ms.max(1) as u64);
    let moved = tokio::time::timeout(session, async {
        for _ in 0..5 {
            let image = broker.image();
            if image.brokers.get(&broker.node_id).is_none_or(|b| b.fenced) {
                return true;
            }
            let records = fence_records(&image, broker.node_id, |t| {
                unclean_allowed(&broker.config, t)
            });
            match broker.commit_metadata_async(records).await {
                Ok(_) => return true,
                Err(e) => {
                    tracing::info!(error = %e, "controlled shutdown not done yet; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        false
    })
    .await;
    match moved {
        Ok(true) => tracing::info!("controlled shutdown: leadership moved to other replicas"),
        _ => tracing::warn!("controlled shutdown could not reach the controller; stopping anyway"),
    }
}
