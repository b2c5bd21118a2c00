//! Metadata log replay: the input written as `metadata.log` in a temporary directory, opened
//! with `LocalMetadataLog::open`, which must not panic.
//!
//! Input: mode byte (even = frame CRCs recomputed first, so the JSON records get replayed) |
//! the file. A successful open must leave a file that opens again to the same image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_fuzz::{fix_metadata_crcs, split_mode, temp_dir};
use strom_metadata::LocalMetadataLog;
use strom_metadata::MetadataLog as _;

fuzz_target!(|data: &[u8]| {
    let Some((fix, rest)) = split_mode(data) else { return };
    let mut file = rest.to_vec();
    if fix {
        fix_metadata_crcs(&mut file);
    }
    let dir = temp_dir();
    std::fs::write(dir.path().join("metadata.log"), &file).unwrap();
    let Ok(log) = LocalMetadataLog::open(dir.path()) else { return };
    let image = log.image();
    drop(log);
    let again = LocalMetadataLog::open(dir.path()).expect("reopen a replayed metadata log");
    let again = again.image();
    assert_eq!(again.offset, image.offset);
    assert_eq!(format!("{:?}", again.brokers), format!("{:?}", image.brokers));
    assert_eq!(format!("{:?}", again.topics), format!("{:?}", image.topics));
    assert_eq!(format!("{:?}", again.broker_configs), format!("{:?}", image.broker_configs));
    let sorted = |m: &std::collections::HashMap<_, String>| {
        let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&again.topic_names), sorted(&image.topic_names));
});
