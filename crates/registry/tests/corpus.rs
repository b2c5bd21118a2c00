//! The compatibility corpus: schema pairs (and short version chains) per format with the
//! levels under which the new schema may be registered. The data and the source of each
//! expectation are in tests/corpus/*.txt.

use strom_registry::compat::{self, Level};
use strom_registry::format::{self, SchemaType};

struct Case {
    name: String,
    source: String,
    olds: Vec<String>,
    new: String,
    compatible: Vec<Level>,
}

fn load(file: &str) -> Vec<Case> {
    let path = format!("{}/tests/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut cases = Vec::new();
    for block in text.split("\n=== ").skip(1) {
        let (name, body) = block.split_once('\n').expect("case name line");
        let mut case = Case {
            name: name.trim().to_string(),
            source: String::new(),
            olds: Vec::new(),
            new: String::new(),
            compatible: Vec::new(),
        };
        // Sections: "source: ...", "old:" / "new:" followed by text lines, "compatible: ...".
        let mut current: Option<&str> = None;
        let mut buf = String::new();
        let flush = |case: &mut Case, current: Option<&str>, buf: &mut String| match current {
            Some("old") => case.olds.push(std::mem::take(buf)),
            Some("new") => case.new = std::mem::take(buf),
            _ => buf.clear(),
        };
        for line in body.lines() {
            if let Some(s) = line.strip_prefix("source: ") {
                flush(&mut case, current.take(), &mut buf);
                case.source = s.to_string();
            } else if line == "old:" || line == "new:" {
                flush(&mut case, current.take(), &mut buf);
                current = Some(if line == "old:" { "old" } else { "new" });
            } else if let Some(levels) = line.strip_prefix("compatible: ") {
                flush(&mut case, current.take(), &mut buf);
                case.compatible = levels
                    .split_whitespace()
                    .map(|l| Level::parse(l).unwrap_or_else(|| panic!("unknown level {l}")))
                    .collect();
            } else if current.is_some() {
                buf.push_str(line);
                buf.push('\n');
            }
        }
        flush(&mut case, current.take(), &mut buf);
        assert!(!case.source.is_empty(), "{}: no source", case.name);
        assert!(!case.olds.is_empty(), "{}: no old schema", case.name);
        assert!(!case.new.is_empty(), "{}: no new schema", case.name);
        assert!(case.compatible.contains(&Level::None), "{}", case.name);
        cases.push(case);
    }
    cases
}

fn run(ty: SchemaType, file: &str) {
    let cases = load(file);
    assert!(
        cases.len() >= 60,
        "{file}: {} cases, expected at least 60",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let parse = |text: &str| {
            format::parse(ty, text, &[]).unwrap_or_else(|e| panic!("{}: {e}\n{text}", case.name))
        };
        let olds: Vec<_> = case.olds.iter().map(|t| parse(t)).collect();
        let new = parse(&case.new);
        let previous: Vec<(i32, &format::Parsed)> = olds
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i32 + 1, p))
            .collect();
        for level in Level::ALL {
            let problems = compat::check(level, &new, &previous);
            let expected = case.compatible.contains(&level);
            if problems.is_empty() != expected {
                failures.push(format!(
                    "{file}: {:?} under {level}: expected {}, got {} {problems:?}\n    source: {}",
                    case.name,
                    if expected {
                        "compatible"
                    } else {
                        "incompatible"
                    },
                    if expected {
                        "incompatible"
                    } else {
                        "compatible"
                    },
                    case.source
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn avro_corpus() {
    run(SchemaType::Avro, "avro.txt");
}

#[test]
fn protobuf_corpus() {
    run(SchemaType::Protobuf, "protobuf.txt");
}

#[test]
fn json_schema_corpus() {
    run(SchemaType::Json, "json.txt");
}

/// What the fuzz targets assert, over every schema of the corpus: a schema reads its own data,
/// and its canonical form parses to the same canonical form.
#[test]
fn every_corpus_schema_reads_itself_and_keeps_its_canonical_form() {
    for (ty, file) in [
        (SchemaType::Avro, "avro.txt"),
        (SchemaType::Protobuf, "protobuf.txt"),
        (SchemaType::Json, "json.txt"),
    ] {
        for case in load(file) {
            for text in case.olds.iter().chain([&case.new]) {
                let p = format::parse(ty, text, &[]).unwrap();
                assert!(
                    format::can_read(&p, &p).is_empty(),
                    "{file} {}: {text}",
                    case.name
                );
                if ty != SchemaType::Protobuf {
                    let again = format::parse(ty, p.canonical(), &[]).unwrap();
                    assert_eq!(again.canonical(), p.canonical(), "{file} {}", case.name);
                }
            }
        }
    }
}
