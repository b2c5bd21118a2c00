//! Request decoding as the broker does it, with the input as one whole frame (size prefix
//! removed): `peek_header`, `decode_header`, then the body for whatever API key and version the
//! frame names (every API key the codec knows is reachable), through both `decode_request` and
//! the header + `decode_body` path the connection uses.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

// As in the strom binary: frames that claim billions of array elements reserve address space,
// not memory (see strom_protocol::alloc).
#[global_allocator]
static ALLOCATOR: strom_protocol::alloc::LargeAllocGuard = strom_protocol::alloc::LargeAllocGuard;
use strom_protocol::ApiKey;
use strom_protocol::request::{decode_body, decode_header, decode_request, peek_header};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let prefix = peek_header(data);

    let mut rest = frame.clone();
    let header = decode_header(&mut rest);
    match (&prefix, &header) {
        (Err(_), Ok(_)) => panic!("header decoded from a frame too short to peek"),
        (Ok(p), Ok((key, h))) => {
            assert_eq!(ApiKey::try_from(p.api_key).ok(), Some(*key));
            assert_eq!(h.request_api_key, p.api_key);
            assert_eq!(h.request_api_version, p.api_version);
            assert_eq!(h.correlation_id, p.correlation_id);
            assert!(rest.len() <= frame.len() - 8);
        }
        _ => {}
    }

    let whole = decode_request(frame);
    if let Ok((key, h)) = header {
        let body = decode_body(key, h.request_api_version, &mut rest);
        assert_eq!(body.is_ok(), whole.is_ok());
    } else {
        assert!(whole.is_err());
    }
    if let Ok(req) = whole {
        assert_eq!(Some(req.api_key), ApiKey::try_from(req.header.request_api_key).ok());
        assert_eq!(req.api_version, req.header.request_api_version);
    }
});
