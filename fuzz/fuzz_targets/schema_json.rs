//! The Schema Registry's parser and compatibility checker for JSON Schema documents.
//!
//! Input: an old schema, a NUL byte, a new schema (without a NUL, both are the same text).
//!
//! Parsing and checking must not panic; a schema that parses reads its own data, and its
//! canonical form parses to the same canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_registry::format::{self, SchemaType};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (old, new) = text.split_once('\0').unwrap_or((&text, &text));
    let ty = SchemaType::Json;
    let old = format::parse(ty, old, &[]);
    let new = format::parse(ty, new, &[]);
    for p in [&old, &new].into_iter().flatten() {
        // A schema reads its own data (unless it is too complex for the checker's budget).
        let problems = format::can_read(p, p);
        assert!(problems.iter().all(|m| m.contains("too complex")), "{problems:?}");
        if ty != SchemaType::Protobuf {
            let again = format::parse(ty, p.canonical(), &[]).expect("the canonical form parses");
            assert_eq!(again.canonical(), p.canonical());
        }
    }
    if let (Ok(a), Ok(b)) = (&old, &new) {
        let _ = format::can_read(a, b);
        let _ = format::can_read(b, a);
    }
});
