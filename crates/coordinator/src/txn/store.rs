//! The records of `__transaction_state`, in Kafka's key/value layout: key v0 (transactional
//! id), value v0 (producer id and epoch, timeout, status, partitions, last update and start
//! timestamps). A null value is a tombstone: the transactional id expired.

use bytes::{BufMut, Bytes, BytesMut};

/// Status of a transaction, with its stored code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnStatus {
    pub fn code(self) -> i8 {
        match self {
            TxnStatus::Empty => 0,
            TxnStatus::Ongoing => 1,
            TxnStatus::PrepareCommit => 2,
            TxnStatus::PrepareAbort => 3,
            TxnStatus::CompleteCommit => 4,
            TxnStatus::CompleteAbort => 5,
            TxnStatus::Dead => 6,
            TxnStatus::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnStatus> {
        Some(match code {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            6 => TxnStatus::Dead,
            7 => TxnStatus::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name the admin APIs use (DescribeTransactions, ListTransactions filters).
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub const ALL: [TxnStatus; 8] = [
        TxnStatus::Empty,
        TxnStatus::Ongoing,
        TxnStatus::PrepareCommit,
        TxnStatus::PrepareAbort,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
        TxnStatus::Dead,
        TxnStatus::PrepareEpochFence,
    ];
}

/// A transaction's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// (topic, partition), sorted.
    pub partitions: Vec<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
}

pub use crate::group::store::Malformed;
use crate::group::store::{Reader, put_str};

pub fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn value(v: &TxnValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i64(v.producer_id);
    b.put_i16(v.producer_epoch);
    b.put_i32(v.timeout_ms);
    b.put_i8(v.status.code());
    // Partitions grouped by topic.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &v.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    b.put_i32(topics.len() as i32);
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(v.last_update_ms);
    b.put_i64(v.start_ms);
    b.freeze()
}

/// Decodes a record: the transactional id and its value (None for a tombstone).
pub fn decode(key: Bytes, value: Option<Bytes>) -> Result<(String, Option<TxnValue>), Malformed> {
    let mut k = Reader(key);
    if k.i16()? != 0 {
        return Err(Malformed("unknown key version"));
    }
    let id = k.str()?;
    let Some(value) = value else {
        return Ok((id, None));
    };
    let mut v = Reader(value);
    if v.i16()? != 0 {
        return Err(Malformed("unknown value version"));
    }
    let producer_id = v.i64()?;
    let producer_epoch = v.i16()?;
    let timeout_ms = v.i32()?;
    let status = TxnStatus::from_code(v.i8()?).ok_or(Malformed("unknown status"))?;
    let mut partitions = Vec::new();
    for _ in 0..v.i32()?.max(0) {
        let topic = v.str()?;
        for _ in 0..v.i32()?.max(0) {
            partitions.push((topic.clone(), v.i32()?));
        }
    }
    let last_update_ms = v.i64()?;
    let start_ms = v.i64()?;
    Ok((
        id,
        Some(TxnValue {
            producer_id,
            producer_epoch,
            timeout_ms,
            status,
            partitions,
            last_update_ms,
            start_ms,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let v = TxnValue {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            status: TxnStatus::Ongoing,
            partitions: vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)],
            last_update_ms: 11,
            start_ms: 10,
        };
        let (id, back) = decode(key("tx-1"), Some(value(&v))).unwrap();
        assert_eq!((id.as_str(), back), ("tx-1", Some(v.clone())));
        assert_eq!(decode(key("tx-1"), None).unwrap(), ("tx-1".into(), None));
        let bytes = value(&v);
        assert!(decode(key("x"), Some(bytes.slice(..bytes.len() - 3))).is_err());
        assert!(decode(Bytes::from_static(&[0, 9, 1]), None).is_err());
        for s in TxnStatus::ALL {
            assert_eq!(TxnStatus::from_code(s.code()), Some(s));
        }
    }
}
