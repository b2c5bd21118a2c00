//! Choosing a partition for a record, as Kafka's Java client does by default.
//!
//! - A keyed record goes to `toPositive(murmur2(key)) % partitions`, with Kafka's variant of
//!   murmur2 (seed `0x9747b28c`), so that a key lands on the same partition whichever Kafka
//!   client produced it.
//! - A keyless record goes to the topic's current "sticky" partition; the producer moves the
//!   sticky partition on when the batch there is full or has been sent (Kafka's uniform sticky
//!   partitioner, KIP-480), which fills batches instead of spreading single records.

use std::collections::HashMap;

use super::config::PartitionerKind;

/// Kafka's murmur2 hash of `data` (the 32-bit MurmurHash2 with seed `0x9747b28c`, the tail
/// bytes read as Kafka reads them).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `toPositive`: the hash with its sign bit cleared.
pub fn to_positive(h: i32) -> i32 {
    h & 0x7fff_ffff
}

/// The partition of a keyed record among `partitions` (at least 1).
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    to_positive(murmur2(key)) % partitions.max(1)
}

/// Partition choice for records without an explicit partition.
#[derive(Debug)]
pub struct Partitioner {
    kind: PartitionerKind,
    /// The sticky partition of each topic.
    sticky: HashMap<String, i32>,
    /// The next partition of each topic for round robin.
    round_robin: HashMap<String, i32>,
    rng: u64,
}

impl Partitioner {
    pub fn new(kind: PartitionerKind, seed: u64) -> Partitioner {
        Partitioner {
            kind,
            sticky: HashMap::new(),
            round_robin: HashMap::new(),
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The partition for a record with `key` on a topic of `partitions` partitions.
    pub fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        let partitions = partitions.max(1);
        match self.kind {
            PartitionerKind::RoundRobin => {
                let next = self.round_robin.entry(topic.to_string()).or_insert(0);
                let p = *next % partitions;
                *next = (p + 1) % partitions;
                p
            }
            PartitionerKind::Default { ignore_keys } => match key {
                Some(key) if !ignore_keys => key_partition(key, partitions),
                _ => {
                    if let Some(&p) = self.sticky.get(topic).filter(|&&p| p < partitions) {
                        return p;
                    }
                    let p = (self.random() % partitions as u64) as i32;
                    self.sticky.insert(topic.to_string(), p);
                    p
                }
            },
        }
    }

    /// Moves the sticky partition of `topic` away from `from` (its batch there is full or was
    /// sent): to another partition, chosen at random.
    pub fn batch_done(&mut self, topic: &str, from: i32, partitions: i32) {
        if self.sticky.get(topic) != Some(&from) {
            return;
        }
        let next = if partitions <= 1 {
            0
        } else {
            let step = 1 + (self.random() % (partitions as u64 - 1)) as i32;
            (from + step) % partitions
        };
        self.sticky.insert(topic.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own murmur2 test vectors (the `testMurmur2` case of Kafka's `UtilsTest`, as
    /// other Kafka clients reproduce them), plus the single-digit strings Akka's Kafka-compatible
    /// shard allocation checks against Kafka's `Utils.murmur2`.
    const HASHES: &[(&str, i32)] = &[
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        ("abc", 479_470_107),
        ("1", -1_993_445_489),
        ("12", 126_087_238),
        ("123", -267_702_483),
        ("1234", -1_614_185_708),
        ("12345", -1_188_365_604),
    ];

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        for (key, hash) in HASHES {
            assert_eq!(murmur2(key.as_bytes()), *hash, "murmur2({key:?})");
        }
    }

    /// (key, partitions, partition): computed by hand from the published hashes above as
    /// `(hash & 0x7fffffff) % partitions`, the Java client's default for keyed records. Not
    /// derived from this crate's code.
    const PARTITIONS: &[(&str, i32, i32)] = &[
        ("21", 3, 0),
        ("21", 7, 3),
        ("21", 100, 40),
        ("foobar", 12, 6),
        ("foobar", 100, 66),
        ("a-little-bit-long-string", 3, 2),
        ("a-little-bit-long-string", 7, 1),
        ("a-little-bit-long-string", 12, 8),
        ("a-little-bit-longer-string", 6, 5),
        ("a-little-bit-longer-string", 100, 19),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 7, 3),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 100, 77),
        ("abc", 6, 3),
        ("abc", 7, 4),
        ("1", 7, 2),
        ("1", 100, 59),
        ("12", 3, 1),
        ("12", 12, 10),
        ("123", 6, 5),
        ("1234", 100, 40),
        ("12345", 12, 8),
        ("12345", 1, 0),
    ];

    #[test]
    fn keyed_records_land_where_the_java_client_puts_them() {
        let mut p = Partitioner::new(PartitionerKind::Default { ignore_keys: false }, 7);
        for (key, n, expected) in PARTITIONS {
            assert_eq!(
                key_partition(key.as_bytes(), *n),
                *expected,
                "{key:?} of {n}"
            );
            assert_eq!(p.partition("t", Some(key.as_bytes()), *n), *expected);
        }
    }

    #[test]
    fn keyless_records_stick_until_the_batch_is_done() {
        let mut p = Partitioner::new(PartitionerKind::Default { ignore_keys: false }, 42);
        let first = p.partition("t", None, 6);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 6), first);
        }
        p.batch_done("t", first, 6);
        let second = p.partition("t", None, 6);
        assert_ne!(second, first);
        // A batch done elsewhere does not move it.
        p.batch_done("t", (second + 1) % 6, 6);
        assert_eq!(p.partition("t", None, 6), second);
        // Over many batches every partition gets some.
        let mut seen = [0; 6];
        for _ in 0..600 {
            let cur = p.partition("t", None, 6);
            seen[cur as usize] += 1;
            p.batch_done("t", cur, 6);
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        // With ignore.keys, keyed records are sticky too.
        let mut p = Partitioner::new(PartitionerKind::Default { ignore_keys: true }, 1);
        let s = p.partition("t", Some(b"21"), 100);
        assert_eq!(p.partition("t", Some(b"foobar"), 100), s);
    }

    #[test]
    fn round_robin_cycles() {
        let mut p = Partitioner::new(PartitionerKind::RoundRobin, 1);
        let got: Vec<i32> = (0..7).map(|_| p.partition("t", Some(b"k"), 3)).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2, 0]);
    }
}
