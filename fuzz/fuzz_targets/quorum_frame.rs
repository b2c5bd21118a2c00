//! The body of a metadata-quorum request frame (Raft AppendEntries, Vote, InstallSnapshot as
//! JSON), as a quorum member decodes it from a peer. Decoding must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strom_metadata::quorum::tcp::check_request_body(data);
});
