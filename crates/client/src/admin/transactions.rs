//! Transaction and producer administration: what `strom transactions` and `strom producers`
//! show, like Kafka's kafka-transactions.sh: ListTransactions on every broker,
//! DescribeTransactions at the transaction coordinator, DescribeProducers at the partition
//! leader.

use std::collections::BTreeMap;

use strom_protocol::messages::{
    TopicName, TransactionalId,
    describe_producers_request::{DescribeProducersRequest, TopicRequest},
    describe_transactions_request::DescribeTransactionsRequest,
    list_transactions_request::ListTransactionsRequest,
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

use super::groups::unexpected;
use super::{Admin, Route};
use crate::error::{ClientError, check_resource as check};

/// A transactional id as ListTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
    /// The coordinator, as `host:port`.
    pub coordinator: String,
}

/// A transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_time_ms: i64,
    /// Partitions of the open transaction, by topic.
    pub partitions: BTreeMap<String, Vec<i32>>,
    pub coordinator: String,
}

/// A producer a partition knows (DescribeProducers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// -1 when the producer has no open transaction on the partition.
    pub current_txn_start_offset: i64,
}

impl Admin {
    /// Every transactional id of the cluster (ListTransactions on every broker), sorted; with
    /// `states`, only those in one of the states (e.g. Ongoing, CompleteCommit).
    pub async fn list_transactions(
        &self,
        states: &[String],
    ) -> Result<Vec<TransactionListing>, ClientError> {
        let addrs = self.all_brokers().await?;
        let mut all = BTreeMap::new();
        for addr in &addrs {
            let (_, response) = self
                .send(
                    Route::Address(addr.clone()),
                    ApiKey::ListTransactions,
                    1,
                    |_| {
                        let mut req = ListTransactionsRequest::default();
                        req.state_filters = states.iter().map(|s| str_bytes(s.as_str())).collect();
                        req.duration_filter = -1;
                        Ok(RequestKind::ListTransactions(req))
                    },
                )
                .await?;
            let ResponseKind::ListTransactions(r) = response else {
                return Err(unexpected("ListTransactions"));
            };
            check(
                r.error_code,
                &format!("listing transactions on {addr}"),
                None,
            )?;
            if let Some(bad) = r.unknown_state_filters.first() {
                return Err(ClientError::InvalidArgument(format!(
                    "unknown transaction state {:?}; states are Empty, Ongoing, PrepareCommit, \
                     PrepareAbort, CompleteCommit, CompleteAbort, Dead, PrepareEpochFence",
                    bad.as_str()
                )));
            }
            for t in r.transaction_states {
                all.insert(
                    t.transactional_id.to_string(),
                    TransactionListing {
                        transactional_id: t.transactional_id.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator: addr.clone(),
                    },
                );
            }
        }
        Ok(all.into_values().collect())
    }

    /// Describes one transactional id at its coordinator.
    pub async fn describe_transaction(
        &self,
        id: &str,
    ) -> Result<TransactionDescription, ClientError> {
        let (t, addr) = self
            .call(
                Route::Transaction(id.to_string()),
                ApiKey::DescribeTransactions,
                0,
                |_| {
                    let mut req = DescribeTransactionsRequest::default();
                    req.transactional_ids = vec![TransactionalId(str_bytes(id))];
                    Ok(RequestKind::DescribeTransactions(req))
                },
                |_, response, addr| {
                    let ResponseKind::DescribeTransactions(r) = response else {
                        return Err(unexpected("DescribeTransactions"));
                    };
                    let t = r.transaction_states.into_iter().next().ok_or_else(|| {
                        ClientError::UnexpectedResponse("empty DescribeTransactions".into())
                    })?;
                    check(t.error_code, &format!("transactional id {id:?}"), None)?;
                    Ok((t, addr.to_string()))
                },
            )
            .await?;
        let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for topic in t.topics {
            let ps = partitions.entry(topic.topic.to_string()).or_default();
            ps.extend(topic.partitions);
            ps.sort_unstable();
        }
        Ok(TransactionDescription {
            transactional_id: id.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions,
            coordinator: addr,
        })
    }

    /// The producers the leader of `topic`/`partition` knows.
    pub async fn describe_producers(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<ActiveProducer>, ClientError> {
        let md = self.metadata(Some(vec![topic.to_string()])).await?;
        let t = md
            .topic(topic)
            .ok_or_else(|| ClientError::InvalidArgument(format!("no topic {topic:?}")))?;
        check(t.error_code, &format!("topic {topic:?}"), None)?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.index == partition)
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "topic {topic:?} has no partition {partition} ({} partitions)",
                    t.partitions.len()
                ))
            })?;
        if p.leader < 0 {
            return Err(ClientError::partition(5, topic, partition, None)); // LEADER_NOT_AVAILABLE
        }
        let (_, response) = self
            .send(
                Route::Leader(topic.to_string(), partition),
                ApiKey::DescribeProducers,
                0,
                |_| {
                    let mut req = DescribeProducersRequest::default();
                    let mut tr = TopicRequest::default();
                    tr.name = TopicName(str_bytes(topic));
                    tr.partition_indexes = vec![partition];
                    req.topics = vec![tr];
                    Ok(RequestKind::DescribeProducers(req))
                },
            )
            .await?;
        let ResponseKind::DescribeProducers(r) = response else {
            return Err(unexpected("DescribeProducers"));
        };
        let pr = r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| ClientError::UnexpectedResponse("empty DescribeProducers".into()))?;
        check(
            pr.error_code,
            &format!("{topic}-{partition}"),
            pr.error_message.as_deref(),
        )?;
        let mut out: Vec<ActiveProducer> = pr
            .active_producers
            .into_iter()
            .map(|a| ActiveProducer {
                producer_id: a.producer_id.0,
                producer_epoch: a.producer_epoch,
                last_sequence: a.last_sequence,
                last_timestamp: a.last_timestamp,
                coordinator_epoch: a.coordinator_epoch,
                current_txn_start_offset: a.current_txn_start_offset,
            })
            .collect();
        out.sort_by_key(|a| a.producer_id);
        Ok(out)
    }
}
