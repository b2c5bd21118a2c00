//! The key/value records of `__consumer_offsets` and `__transaction_state`, as the group and
//! transaction coordinators read them at start-up.
//!
//! Input: key length (u8) | key | value (the rest; an empty rest is a tombstone).
//!
//! Decoding must not panic; a transaction record that decodes must re-encode to a value that
//! decodes to the same thing.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strom_broker::{group, txn};
use strom_fuzz::{take_be, take_bytes};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let key_len = take_be(&mut rest, 1) as usize;
    let key = Bytes::copy_from_slice(take_bytes(&mut rest, key_len));
    let value = (!rest.is_empty()).then(|| Bytes::copy_from_slice(rest));
    let _ = group::store::decode(key.clone(), value.clone());
    if let Ok((id, Some(v))) = txn::store::decode(key, value) {
        let again = txn::store::decode(txn::store::key(&id), Some(txn::store::value(&v)));
        assert_eq!(again, Ok((id, Some(v))));
    }
});
