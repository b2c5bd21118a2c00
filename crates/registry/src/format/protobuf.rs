//! Protobuf schemas: `.proto` text (or a base64 `FileDescriptorProto`, which some serializers
//! send) compiled by protox, with references served as imports by their import path.
//! Compatibility rules are strom's, after the wire format's rules: what matters on the wire is
//! field numbers and wire types, so renames are free and additions and removals are allowed.

use std::collections::HashMap;

use prost_reflect::prost::Message;
use prost_reflect::prost_types::FileDescriptorProto;
use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind,
    MessageDescriptor, Syntax,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::Dependency;

/// The file name the schema being registered gets while compiling (imports use their
/// reference names).
const MAIN_FILE: &str = "__strom_schema__.proto";

#[derive(Debug, Clone)]
pub struct ProtoSchema {
    pub pool: DescriptorPool,
    pub file: String,
    /// The main file's descriptor, without its name and source info, encoded and hex-written.
    pub canonical: String,
}

struct Sources(HashMap<String, File>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| protox::Error::file_not_found(name))
    }
}

/// Standard base64 (padding and whitespace ignored); `None` for other characters.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        if c == b'=' || c.is_ascii_whitespace() {
            continue;
        }
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A file from `.proto` text, or from a base64-encoded `FileDescriptorProto`.
fn open(name: &str, text: &str) -> Result<File, String> {
    match File::from_source(name, text) {
        Ok(f) => Ok(f),
        Err(parse_error) => {
            let looks_binary = !text.contains(';') && !text.trim().is_empty();
            if looks_binary
                && let Some(bytes) = decode_base64(text.trim())
                && let Ok(mut fd) = FileDescriptorProto::decode(bytes.as_slice())
            {
                fd.name = Some(name.to_string());
                return Ok(File::from_file_descriptor_proto(fd));
            }
            Err(format!("Invalid Protobuf schema: {parse_error}"))
        }
    }
}

pub fn parse(text: &str, deps: &[Dependency]) -> Result<ProtoSchema, String> {
    let mut files = HashMap::new();
    for d in deps {
        files.insert(d.name.clone(), open(&d.name, &d.text)?);
    }
    files.insert(MAIN_FILE.to_string(), open(MAIN_FILE, text)?);
    let mut chain = ChainFileResolver::new();
    chain.add(Sources(files));
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    compiler
        .open_file(MAIN_FILE)
        .map_err(|e| format!("Invalid Protobuf schema: {e}"))?;
    let pool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(MAIN_FILE)
        .ok_or_else(|| "Invalid Protobuf schema: the file did not compile".to_string())?;
    let mut proto = file.file_descriptor_proto().clone();
    proto.name = None;
    proto.source_code_info = None;
    let canonical = proto
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(ProtoSchema {
        pool,
        file: MAIN_FILE.to_string(),
        canonical,
    })
}

impl ProtoSchema {
    fn main(&self) -> FileDescriptor {
        self.pool
            .get_file_by_name(&self.file)
            .expect("the main file is in its own pool")
    }

    /// The messages defined in the main file, nested ones included, by full name.
    fn messages(&self) -> Vec<MessageDescriptor> {
        fn walk(m: MessageDescriptor, out: &mut Vec<MessageDescriptor>) {
            if m.is_map_entry() {
                return;
            }
            for c in m.child_messages() {
                walk(c, out);
            }
            out.push(m);
        }
        let mut out = Vec::new();
        for m in self.main().messages() {
            walk(m, &mut out);
        }
        out
    }

    fn enums(&self) -> Vec<EnumDescriptor> {
        let mut out: Vec<EnumDescriptor> = self.main().enums().collect();
        for m in self.messages() {
            out.extend(m.child_enums());
        }
        out
    }
}

/// Scalar types that share a wire encoding and read each other's values (the Protobuf
/// language guide's "updating a message type" rules): a change inside one group keeps old
/// and new programs able to parse each other's data.
fn wire_group(kind: &Kind) -> Option<u8> {
    Some(match kind {
        Kind::Int32 | Kind::Uint32 | Kind::Int64 | Kind::Uint64 | Kind::Bool => 1,
        Kind::Sint32 | Kind::Sint64 => 2,
        Kind::Fixed32 | Kind::Sfixed32 => 3,
        Kind::Fixed64 | Kind::Sfixed64 => 4,
        Kind::String | Kind::Bytes => 5,
        Kind::Double => 6,
        Kind::Float => 7,
        Kind::Message(_) | Kind::Enum(_) => return None,
    })
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn label(f: &FieldDescriptor) -> &'static str {
    if f.is_map() {
        "map"
    } else {
        match f.cardinality() {
            Cardinality::Repeated => "repeated",
            Cardinality::Required => "required",
            Cardinality::Optional => "singular",
        }
    }
}

/// The oneof a field belongs to, ignoring proto3 `optional`'s synthetic oneofs.
fn real_oneof(f: &FieldDescriptor) -> Option<String> {
    f.containing_oneof()
        .filter(|o| !o.is_synthetic())
        .map(|o| o.full_name().to_string())
}

/// Why data written with `writer` cannot be read with `reader` (empty: it can).
pub fn can_read(writer: &ProtoSchema, reader: &ProtoSchema) -> Vec<String> {
    let mut problems = Vec::new();
    let (wf, rf) = (writer.main(), reader.main());
    if wf.package_name() != rf.package_name() {
        problems.push(format!(
            "the package changed from {:?} to {:?}",
            wf.package_name(),
            rf.package_name()
        ));
    }
    if std::mem::discriminant(&wf.syntax()) != std::mem::discriminant(&rf.syntax()) {
        problems.push("the syntax (proto2 or proto3) changed".to_string());
    }
    let reader_messages: HashMap<String, MessageDescriptor> = reader
        .messages()
        .into_iter()
        .map(|m| (m.full_name().to_string(), m))
        .collect();
    for wm in writer.messages() {
        let Some(rm) = reader_messages.get(wm.full_name()) else {
            problems.push(format!("message {} was removed", wm.full_name()));
            continue;
        };
        check_message(&wm, rm, &mut problems);
    }
    let reader_enums: HashMap<String, EnumDescriptor> = reader
        .enums()
        .into_iter()
        .map(|e| (e.full_name().to_string(), e))
        .collect();
    for we in writer.enums() {
        let Some(re) = reader_enums.get(we.full_name()) else {
            problems.push(format!("enum {} was removed", we.full_name()));
            continue;
        };
        // proto3 enums are open: an unknown number is kept as a number. proto2 enums are
        // closed: a number the reader does not know is not a value of the field.
        if matches!(rf.syntax(), Syntax::Proto2) {
            for v in we.values() {
                if re.get_value(v.number()).is_none() {
                    problems.push(format!(
                        "enum {} lost value {} ({}), which a proto2 reader cannot read",
                        we.full_name(),
                        v.number(),
                        v.name()
                    ));
                }
            }
        }
    }
    problems
}

fn check_message(wm: &MessageDescriptor, rm: &MessageDescriptor, problems: &mut Vec<String>) {
    let msg = wm.full_name();
    let writer_fields: HashMap<u32, FieldDescriptor> =
        wm.fields().map(|f| (f.number(), f)).collect();
    // Fields that were outside any oneof and are now in the same reader oneof.
    let mut moved_into: HashMap<String, Vec<u32>> = HashMap::new();
    for rfield in rm.fields() {
        let n = rfield.number();
        let Some(wfield) = writer_fields.get(&n) else {
            if rfield.is_required() {
                problems.push(format!(
                    "{msg}: required field {} ({n}) was added, and older data does not have it",
                    rfield.name()
                ));
            }
            continue;
        };
        let (wk, rk) = (wfield.kind(), rfield.kind());
        if label(wfield) != label(&rfield) {
            problems.push(format!(
                "{msg}: field {n} changed from {} to {}",
                label(wfield),
                label(&rfield)
            ));
        } else if wfield.is_map() {
            let (wv, rv) = (map_types(wfield), map_types(&rfield));
            if wv != rv {
                problems.push(format!(
                    "{msg}: map field {n} changed its key or value type"
                ));
            }
        } else {
            match (&wk, &rk) {
                (Kind::Message(a), Kind::Message(b)) if a.full_name() != b.full_name() => problems
                    .push(format!(
                        "{msg}: field {n} changed from {} to {}",
                        kind_name(&wk),
                        kind_name(&rk)
                    )),
                (Kind::Enum(a), Kind::Enum(b)) if a.full_name() != b.full_name() => {
                    problems.push(format!(
                        "{msg}: field {n} changed from {} to {}",
                        kind_name(&wk),
                        kind_name(&rk)
                    ))
                }
                (Kind::Message(_), Kind::Message(_)) | (Kind::Enum(_), Kind::Enum(_)) => {}
                _ => {
                    let same = wire_group(&wk).is_some() && wire_group(&wk) == wire_group(&rk);
                    if !same {
                        problems.push(format!(
                            "{msg}: field {n} changed type from {} to {}, which is not wire-compatible",
                            kind_name(&wk),
                            kind_name(&rk)
                        ));
                    }
                }
            }
        }
        if rfield.is_required() && !wfield.is_required() {
            problems.push(format!(
                "{msg}: field {n} became required, and older data may not have it"
            ));
        }
        let (wo, ro) = (real_oneof(wfield), real_oneof(&rfield));
        if let Some(ro) = ro
            && wo.is_none()
        {
            moved_into.entry(ro).or_default().push(n);
        }
    }
    for (oneof, moved) in moved_into {
        let existing = rm
            .oneofs()
            .find(|o| o.full_name() == oneof)
            .map(|o| {
                o.fields().any(|f| {
                    !moved.contains(&f.number()) && writer_fields.contains_key(&f.number())
                })
            })
            .unwrap_or(false);
        if existing {
            problems.push(format!(
                "{msg}: field(s) {moved:?} moved into the existing oneof {oneof}"
            ));
        } else if moved.len() > 1 {
            problems.push(format!(
                "{msg}: several fields {moved:?} moved into the new oneof {oneof}; data that sets more than one of them cannot be read"
            ));
        }
    }
    // A field that is required in the reader and absent in the writer was handled above; a
    // required field the writer had and the reader dropped is fine for the reader.
    let _ = wm;
}

fn map_types(f: &FieldDescriptor) -> (String, String) {
    match f.kind() {
        Kind::Message(entry) => {
            let k = entry.map_entry_key_field().kind();
            let v = entry.map_entry_value_field().kind();
            (kind_name(&k), kind_name(&v))
        }
        other => (kind_name(&other), String::new()),
    }
}

fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The schema as a base64-encoded `FileDescriptorProto` (the API's `format=serialized`): a
/// schema registered in that form is returned as it was given.
pub fn serialized(text: &str, deps: &[Dependency]) -> Result<String, String> {
    if File::from_source(MAIN_FILE, text).is_err() && open(MAIN_FILE, text).is_ok() {
        return Ok(text.trim().to_string());
    }
    let parsed = parse(text, deps)?;
    let mut proto = parsed.main().file_descriptor_proto().clone();
    proto.source_code_info = None;
    Ok(encode_base64(&proto.encode_to_vec()))
}
