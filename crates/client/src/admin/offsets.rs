//! Partition offsets: ListOffsets (earliest, latest, max timestamp, by time) and
//! DeleteRecords, sent to the partition leader.

use strom_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind};

use super::{Admin, Route};
use crate::client::{missing, offset_spec, partition_subject, topic_name, unexpected, versions};
use crate::error::ClientError;

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the next offset to be written).
    Latest,
    /// The offset of the record with the highest timestamp.
    MaxTimestamp,
    /// The first offset whose timestamp is at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    /// The ListOffsets timestamp that asks for it.
    pub fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => offset_spec::EARLIEST,
            OffsetSpec::Latest => offset_spec::LATEST,
            OffsetSpec::MaxTimestamp => offset_spec::MAX_TIMESTAMP,
            OffsetSpec::Timestamp(t) => t.max(0),
        }
    }
}

impl Admin {
    /// The offset `spec` names in a partition, with its record's timestamp (-1 when there is
    /// none). By time, the offset is -1 when every record is older.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<(i64, i64), ClientError> {
        self.retrying(Route::Leader(topic.to_string(), partition), |_| {
            self.client.list_offsets(topic, partition, spec.wire())
        })
        .await
    }

    /// [`Admin::list_offset`] of several partitions at once; one result per partition, in
    /// order.
    pub async fn list_offsets(
        &self,
        partitions: &[(String, i32, OffsetSpec)],
    ) -> Vec<Result<(i64, i64), ClientError>> {
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, partition, spec) in partitions {
            out.push(self.list_offset(topic, *partition, *spec).await);
        }
        out
    }

    /// Log start and log end offset of a partition.
    pub async fn log_offsets(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i64, i64), ClientError> {
        let (start, _) = self
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await?;
        let (end, _) = self
            .list_offset(topic, partition, OffsetSpec::Latest)
            .await?;
        Ok((start, end))
    }

    /// The first offset of a partition whose timestamp is at or after `timestamp_ms`, or
    /// None when every record is older.
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, ClientError> {
        let (offset, _) = self
            .list_offset(topic, partition, OffsetSpec::Timestamp(timestamp_ms))
            .await?;
        Ok((offset >= 0).then_some(offset))
    }

    /// Deletes the records of a partition before `before_offset` (-1: up to the high
    /// watermark); returns the new log start offset.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64, ClientError> {
        let timeout_ms = self.config.common.request_timeout.as_millis() as i32;
        self.call(
            Route::Leader(topic.to_string(), partition),
            ApiKey::DeleteRecords,
            versions::DELETE_RECORDS,
            |_| {
                let mut p = DeleteRecordsPartition::default();
                p.partition_index = partition;
                p.offset = before_offset;
                let mut t = DeleteRecordsTopic::default();
                t.name = topic_name(topic);
                t.partitions = vec![p];
                let mut req = DeleteRecordsRequest::default();
                req.topics = vec![t];
                req.timeout_ms = timeout_ms;
                Ok(RequestKind::DeleteRecords(req))
            },
            |_, response, _| {
                let ResponseKind::DeleteRecords(response) = response else {
                    return Err(unexpected("DeleteRecords", &response));
                };
                let p = response
                    .topics
                    .iter()
                    .filter(|t| t.name.as_str() == topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition)
                    .ok_or_else(|| missing(partition_subject(topic, partition)))?;
                if p.error_code != 0 {
                    return Err(ClientError::partition(p.error_code, topic, partition, None));
                }
                Ok(p.low_watermark)
            },
        )
        .await
    }
}
