//! Response decoding as strom's client does it: `decode_response` for the API key and version
//! named by the first four bytes, on the rest of the input as the response frame.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

// As in the strom binary: frames that claim billions of array elements reserve address space,
// not memory (see strom_protocol::alloc).
#[global_allocator]
static ALLOCATOR: strom_protocol::alloc::LargeAllocGuard = strom_protocol::alloc::LargeAllocGuard;
use strom_fuzz::take_be;
use strom_protocol::{ApiKey, decode_response};

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let key = take_be(&mut data, 2) as u16 as i16;
    let version = take_be(&mut data, 2) as u16 as i16;
    let Ok(api_key) = ApiKey::try_from(key) else { return };
    let valid = api_key.valid_versions();
    if version < valid.min || version > valid.max {
        return;
    }
    let _ = decode_response(api_key, version, Bytes::copy_from_slice(data));
});
