//! Fetch responses framed around records that are written separately.
//!
//! A Fetch response is mostly record bytes. To send those straight from segment files
//! (sendfile on plaintext connections), the response is encoded as the bytes *around* each
//! partition's records: `pieces[0] records[0] pieces[1] records[1] ... records[n-1] pieces[n]`,
//! with the size prefix of the frame and the length prefix of every records field already
//! written in the pieces. Concatenated with the records, the pieces are byte for byte what
//! [`crate::encode_response`] produces for the same response with those records in it (a test
//! checks this for every Fetch version 4..=16).
//!
//! The outer levels (response header, top-level fields, topics) are written here; each
//! partition is encoded by the generated encoder, so its fields and tagged fields stay
//! exactly the generated ones.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::protocol::Encodable;

use crate::ProtocolError;

/// First Fetch version with flexible encoding (compact arrays, tagged fields, header v1).
const FIRST_FLEXIBLE: i16 = 12;

fn err(version: i16, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Encode {
        api: ApiKey::Fetch,
        version,
        reason: reason.into(),
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Array length: compact (n + 1 as an unsigned varint) or i32.
fn put_array_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_unsigned_varint(buf, n as u32 + 1);
    } else {
        buf.put_i32(n as i32);
    }
}

/// The length prefix of a non-null records field of `len` bytes.
fn put_records_len(buf: &mut BytesMut, flexible: bool, len: u32) {
    if flexible {
        put_unsigned_varint(buf, len + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

/// Frames `response` (Fetch `version`, header included) with the records of its partitions
/// left out: `records_lens[i]` is the length of the records of the i-th partition in response
/// order (topics, then their partitions). The records fields of `response` are ignored. The
/// result has one piece more than there are partitions; see the module documentation.
pub fn frame_fetch_response(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    records_lens: &[u32],
) -> Result<Vec<Bytes>, ProtocolError> {
    let valid = ApiKey::Fetch.valid_versions();
    if version < 4 || version < valid.min || version > valid.max {
        return Err(err(version, "version outside the framer's range"));
    }
    let partition_count: usize = response.responses.iter().map(|t| t.partitions.len()).sum();
    if partition_count != records_lens.len() {
        return Err(err(
            version,
            format!(
                "{} records lengths for {partition_count} partitions",
                records_lens.len()
            ),
        ));
    }
    if !response.unknown_tagged_fields.is_empty()
        || response
            .responses
            .iter()
            .any(|t| !t.unknown_tagged_fields.is_empty())
        || (version >= 16 && !response.node_endpoints.is_empty())
    {
        return Err(err(
            version,
            "tagged fields outside partitions are not framed",
        ));
    }
    let flexible = version >= FIRST_FLEXIBLE;
    let enc = |e: anyhow::Error| err(version, e.to_string());

    let mut pieces = Vec::with_capacity(partition_count + 1);
    let mut buf = BytesMut::with_capacity(64 + 64 * partition_count);
    // Size prefix, patched below once the total is known.
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if flexible {
        // Response header v1: no tagged fields.
        buf.put_u8(0);
    }
    buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(response.error_code);
        buf.put_i32(response.session_id);
    } else if response.error_code != 0 || response.session_id != 0 {
        return Err(err(version, "error_code/session_id need v7"));
    }
    put_array_len(&mut buf, flexible, response.responses.len());

    let mut records_total: u64 = 0;
    let mut scratch_none = BytesMut::new();
    let mut scratch_empty = BytesMut::new();
    let mut lens = records_lens.iter();
    for topic in &response.responses {
        if version <= 12 {
            let name = topic.topic.as_bytes();
            if flexible {
                put_unsigned_varint(&mut buf, name.len() as u32 + 1);
            } else {
                let len = i16::try_from(name.len()).map_err(|_| err(version, "topic name"))?;
                buf.put_i16(len);
            }
            buf.put_slice(name);
        }
        if version >= 13 {
            buf.put_slice(topic.topic_id.as_bytes());
        }
        put_array_len(&mut buf, flexible, topic.partitions.len());
        for partition in &topic.partitions {
            let len = *lens.next().expect("lengths counted above");
            let (head, tail) =
                split_partition(partition, version, &mut scratch_none, &mut scratch_empty)
                    .map_err(enc)?;
            buf.put_slice(head);
            put_records_len(&mut buf, flexible, len);
            pieces.push(buf.split().freeze());
            records_total += u64::from(len);
            buf.put_slice(tail);
        }
        if flexible {
            // The topic's tagged fields: none.
            buf.put_u8(0);
        }
    }
    if flexible {
        // Top-level tagged fields: none (node_endpoints is empty, checked above).
        buf.put_u8(0);
    }
    pieces.push(buf.freeze());

    let encoded: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    let size = encoded - 4 + records_total;
    let size = i32::try_from(size).map_err(|_| err(version, "response larger than 2 GiB"))?;
    let mut first = BytesMut::from(&pieces[0][..]);
    first[..4].copy_from_slice(&size.to_be_bytes());
    pieces[0] = first.freeze();
    Ok(pieces)
}

/// Encodes one partition with the generated encoder and splits it at its records field:
/// the bytes before the records' length prefix and the bytes after the records (the
/// partition's tagged fields). The records field is found as the place where the encodings
/// with null and with empty records differ, so every other field, tagged or not, is exactly
/// what the generated encoder writes.
fn split_partition<'a>(
    partition: &PartitionData,
    version: i16,
    none: &'a mut BytesMut,
    empty: &mut BytesMut,
) -> anyhow::Result<(&'a [u8], &'a [u8])> {
    let mut p = partition.clone();
    p.records = None;
    none.clear();
    p.encode(none, version)?;
    p.records = Some(Bytes::new());
    empty.clear();
    p.encode(empty, version)?;
    anyhow::ensure!(
        none.len() == empty.len(),
        "null and empty records differ in size"
    );
    let at = none
        .iter()
        .zip(empty.iter())
        .position(|(a, b)| a != b)
        .ok_or_else(|| anyhow::anyhow!("records field not found"))?;
    let null_len = if version >= FIRST_FLEXIBLE { 1 } else { 4 };
    let none: &'a [u8] = none;
    Ok((&none[..at], &none[at + null_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode_response;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn records(n: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<u8>>(),
        )
    }

    /// A response with several topics and partitions, errors, empty and large records,
    /// aborted transactions and (where the version has them) partition tagged fields.
    fn sample(version: i16) -> FetchResponse {
        let mut topics = Vec::new();
        for t in 0..3u8 {
            let mut partitions = Vec::new();
            for p in 0..3i32 {
                let len = match (t, p) {
                    (0, 0) => 0,
                    (1, 1) => 300_000,
                    _ => 100 + 37 * p as usize + t as usize,
                };
                let mut pd = PartitionData::default()
                    .with_partition_index(p)
                    .with_error_code(if len == 0 { 1 } else { 0 })
                    .with_high_watermark(1_000 + p as i64)
                    .with_last_stable_offset(900 + p as i64)
                    .with_log_start_offset(if version >= 5 { 7 } else { -1 })
                    .with_preferred_read_replica(BrokerId(if version >= 11 { 3 } else { -1 }))
                    .with_records(Some(records(len, t ^ p as u8)));
                if p == 1 {
                    pd = pd.with_aborted_transactions(Some(vec![
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(42))
                            .with_first_offset(17),
                    ]));
                } else if p == 2 {
                    pd = pd.with_aborted_transactions(Some(vec![]));
                }
                if version >= 12 && t == 2 {
                    pd = pd
                        .with_diverging_epoch(
                            EpochEndOffset::default().with_epoch(4).with_end_offset(99),
                        )
                        .with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(1))
                                .with_leader_epoch(5),
                        );
                }
                partitions.push(pd);
            }
            let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
            if version <= 12 {
                topic = topic.with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))));
            }
            if version >= 13 {
                topic = topic.with_topic_id(uuid_of(t));
            }
            topics.push(topic);
        }
        let mut resp = FetchResponse::default()
            .with_throttle_time_ms(5)
            .with_responses(topics);
        if version >= 7 {
            resp = resp.with_session_id(0).with_error_code(0);
        }
        resp
    }

    fn uuid_of(t: u8) -> uuid::Uuid {
        uuid::Uuid::from_bytes([t + 1; 16])
    }

    fn lens_and_records(resp: &FetchResponse) -> (Vec<u32>, Vec<Bytes>) {
        let recs: Vec<Bytes> = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.records.clone().unwrap_or_default())
            .collect();
        (recs.iter().map(|r| r.len() as u32).collect(), recs)
    }

    fn assemble(pieces: &[Bytes], recs: &[Bytes]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            out.extend_from_slice(piece);
            if let Some(r) = recs.get(i) {
                out.extend_from_slice(r);
            }
        }
        out
    }

    #[test]
    fn framed_fetch_is_byte_identical_to_the_encoder() {
        for version in 4..=16 {
            let resp = sample(version);
            let (lens, recs) = lens_and_records(&resp);
            let expected = encode_response(
                ApiKey::Fetch,
                version,
                77,
                &ResponseKind::Fetch(resp.clone()),
            )
            .unwrap();
            // The records fields of the response are ignored by the framer.
            let mut stripped = resp.clone();
            for t in &mut stripped.responses {
                for p in &mut t.partitions {
                    p.records = None;
                }
            }
            let pieces = frame_fetch_response(version, 77, &stripped, &lens).unwrap();
            assert_eq!(pieces.len(), lens.len() + 1);
            assert_eq!(
                assemble(&pieces, &recs),
                &expected[..],
                "Fetch v{version} differs"
            );
        }
    }

    #[test]
    fn framed_fetch_without_partitions_and_with_a_top_level_error() {
        for version in 7..=16 {
            let resp = FetchResponse::default()
                .with_error_code(70)
                .with_session_id(0);
            let expected = encode_response(
                ApiKey::Fetch,
                version,
                1,
                &ResponseKind::Fetch(resp.clone()),
            )
            .unwrap();
            let pieces = frame_fetch_response(version, 1, &resp, &[]).unwrap();
            assert_eq!(pieces.len(), 1);
            assert_eq!(&pieces[0][..], &expected[..]);
        }
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        let resp = sample(16).with_node_endpoints(vec![NodeEndpoint::default()]);
        let (lens, _) = lens_and_records(&resp);
        assert!(frame_fetch_response(16, 1, &resp, &lens).is_err());
        let resp = sample(10);
        assert!(frame_fetch_response(10, 1, &resp, &[1, 2]).is_err());
    }
}
