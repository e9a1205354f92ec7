//! Decoding of Kubernetes protobuf request bodies
//! (`Content-Type: application/vnd.kubernetes.protobuf`), which kubectl ≥ 1.32
//! sends for its generator commands (`create namespace|deployment|…`,
//! `create token`, `auth can-i`).
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` message
//! `{1: TypeMeta{1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
//! 4: contentType}`; `raw` is the object in the `generated.proto` encoding.
//! Decoding is driven by the type [`catalog`](crate::apiserver::schema::catalog)
//! (field numbers, JSON names, Go pointer-ness and `omitempty`), so every
//! built-in kind decodes, and the result equals what the same object looks
//! like in JSON: zero values of `omitempty` fields are left out, non-pointer
//! structs are present (possibly `{}`), unset non-`omitempty` lists, maps and
//! pointers are `null`, bytes are base64, quantities strings, times RFC 3339.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::apiserver::schema::builtin_type_name;
use crate::apiserver::schema::catalog::{Cardinality, FieldDef, FieldType, TypeDef, catalog};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// Every protobuf body starts with these bytes.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("the body is not a Kubernetes protobuf message (missing k8s\\0 prefix)")]
    MissingMagic,
    /// The bytes are not valid protobuf.
    #[error("malformed protobuf in {context}: {reason}")]
    Malformed {
        /// The message or field being read.
        context: String,
        /// What went wrong.
        reason: &'static str,
    },
    /// The object is of a kind this server cannot decode from protobuf.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({api_version}, Kind={kind} has no protobuf decoding)"
    )]
    UnknownKind {
        /// `apiVersion` from the envelope.
        api_version: String,
        /// `kind` from the envelope.
        kind: String,
    },
    /// The envelope names a content encoding (e.g. gzip) we do not support.
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedEncoding(String),
}

impl ProtobufError {
    /// HTTP status code: 415 for kinds we cannot decode, 400 otherwise.
    pub fn code(&self) -> u16 {
        match self {
            ProtobufError::UnknownKind { .. } | ProtobufError::UnsupportedEncoding(_) => 415,
            _ => 400,
        }
    }

    /// `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self.code() {
            415 => "UnsupportedMediaType",
            _ => "BadRequest",
        }
    }
}

/// True if `content_type` (parameters ignored) is the Kubernetes protobuf type.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Decode a `k8s\0` + `runtime.Unknown` body into the object's JSON form,
/// with `apiVersion` and `kind` set.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let envelope = Envelope::parse(rest)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding(
            envelope.content_encoding,
        ));
    }
    let (group, version) = envelope
        .api_version
        .split_once('/')
        .unwrap_or(("", envelope.api_version.as_str()));
    let def = builtin_type_name(group, version, &envelope.kind)
        .and_then(|name| catalog().get(&name))
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        })?;
    let mut obj = decode_message(envelope.raw, def)?;
    obj.insert("apiVersion".into(), Value::String(envelope.api_version));
    obj.insert("kind".into(), Value::String(envelope.kind));
    Ok(Value::Object(obj))
}

/// Decode the raw message of the built-in type `type_name` (OpenAPI name).
pub fn decode_raw(raw: &[u8], type_name: &str) -> Result<Value, ProtobufError> {
    let def = catalog()
        .get(type_name)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: String::new(),
            kind: type_name.to_string(),
        })?;
    decode_message(raw, def).map(Value::Object)
}

/// The `runtime.Unknown` envelope.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Envelope<'a>, ProtobufError> {
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut r = Reader::new(buf, "runtime.Unknown");
        while !r.done() {
            let (field, wire) = r.key()?;
            match (field, wire) {
                (1, 2) => {
                    let mut tm = Reader::new(r.bytes()?, "runtime.TypeMeta");
                    while !tm.done() {
                        match tm.key()? {
                            (1, 2) => env.api_version = tm.string()?,
                            (2, 2) => env.kind = tm.string()?,
                            (_, w) => tm.skip(w)?,
                        }
                    }
                }
                (2, 2) => env.raw = r.bytes()?,
                (3, 2) => env.content_encoding = r.string()?,
                (_, w) => r.skip(w)?,
            }
        }
        Ok(env)
    }
}

/// A protobuf wire-format reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'a str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], context: &'a str) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            context,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, reason: &'static str) -> ProtobufError {
        ProtobufError::Malformed {
            context: self.context.to_string(),
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.err("varint too long"))
    }

    fn key(&mut self) -> Result<(u32, u8), ProtobufError> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| self.err("field number out of range"))?;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((field, (key & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(self.err("truncated field"));
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.err("length out of range"))?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, ProtobufError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn skip(&mut self, wire: u8) -> Result<(), ProtobufError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            _ => Err(self.err("unsupported wire type")),
        }
    }
}

fn decode_message(buf: &[u8], def: &TypeDef) -> Result<Map<String, Value>, ProtobufError> {
    let mut obj = Map::new();
    let mut seen: Vec<u32> = Vec::new();
    let mut r = Reader::new(buf, def.name);
    while !r.done() {
        let (number, wire) = r.key()?;
        let Some(field) = def.field_by_number(number) else {
            r.skip(wire)?;
            continue;
        };
        seen.push(number);
        match field.cardinality {
            Cardinality::Single => {
                let Some(value) = read_value(&mut r, wire, field.ty)? else {
                    continue;
                };
                match field.json {
                    None => {
                        if let Value::Object(inner) = value {
                            obj.extend(inner);
                        }
                    }
                    Some(name) => {
                        if keep_scalar(field, &value) {
                            obj.insert(name.to_string(), value);
                        } else {
                            obj.remove(name);
                        }
                    }
                }
            }
            Cardinality::Repeated => {
                let Some(name) = field.json else {
                    r.skip(wire)?;
                    continue;
                };
                let mut items = Vec::new();
                if wire == 2
                    && matches!(
                        field.ty,
                        FieldType::Bool | FieldType::Int | FieldType::Float
                    )
                {
                    let mut packed = Reader::new(r.bytes()?, def.name);
                    let element_wire = match field.ty {
                        FieldType::Float => 1,
                        _ => 0,
                    };
                    while !packed.done() {
                        items.extend(read_value(&mut packed, element_wire, field.ty)?);
                    }
                } else {
                    items.extend(read_value(&mut r, wire, field.ty)?);
                }
                let slot = obj
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = slot {
                    list.extend(items);
                }
            }
            Cardinality::Map => {
                let Some(name) = field.json else {
                    r.skip(wire)?;
                    continue;
                };
                if wire != 2 {
                    return Err(r.err("map entry is not length-delimited"));
                }
                let (key, value) = read_map_entry(r.bytes()?, field, def.name)?;
                let slot = obj
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = slot {
                    map.insert(key, value);
                }
            }
        }
    }
    // Go serializes unset non-omitempty slices, maps and pointers as null.
    for field in &def.fields {
        let Some(name) = field.json else { continue };
        let nullable = field.cardinality != Cardinality::Single || field.pointer;
        if field.required && nullable && !seen.contains(&field.number) {
            obj.insert(name.to_string(), Value::Null);
        }
    }
    Ok(obj)
}

/// Whether a decoded single value is serialized: `omitempty` drops the zero
/// value of non-pointer scalars.
fn keep_scalar(field: &FieldDef, value: &Value) -> bool {
    if field.pointer || field.required || matches!(field.ty, FieldType::Message(_)) {
        return true;
    }
    match value {
        Value::String(s) => !s.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

fn read_map_entry(
    buf: &[u8],
    field: &FieldDef,
    context: &str,
) -> Result<(String, Value), ProtobufError> {
    let mut r = Reader::new(buf, context);
    let mut key = String::new();
    let mut value = None;
    while !r.done() {
        match r.key()? {
            (1, 2) => key = r.string()?,
            (2, wire) => value = read_value(&mut r, wire, field.ty)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    let value = value.unwrap_or_else(|| zero_of(field.ty));
    Ok((key, value))
}

fn zero_of(ty: FieldType) -> Value {
    match ty {
        FieldType::String | FieldType::Bytes => Value::String(String::new()),
        FieldType::Bool => Value::Bool(false),
        FieldType::Int | FieldType::Float => Value::from(0),
        FieldType::Message(name) => match special_empty(name) {
            Some(v) => v,
            None => Value::Object(Map::new()),
        },
    }
}

/// What an empty message of a special type reads as.
fn special_empty(name: &str) -> Option<Value> {
    match name {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => Some(Value::Null),
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => Some(Value::String("0".into())),
        _ => None,
    }
}

/// Read one value of type `ty`; `None` for messages of types we cannot map.
fn read_value(r: &mut Reader, wire: u8, ty: FieldType) -> Result<Option<Value>, ProtobufError> {
    let expect = |r: &Reader, want: u8| {
        if wire == want {
            Ok(())
        } else {
            Err(r.err("unexpected wire type"))
        }
    };
    Ok(Some(match ty {
        FieldType::String => {
            expect(r, 2)?;
            Value::String(r.string()?)
        }
        FieldType::Bytes => {
            expect(r, 2)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(r.bytes()?))
        }
        FieldType::Bool => {
            expect(r, 0)?;
            Value::Bool(r.varint()? != 0)
        }
        FieldType::Int => {
            expect(r, 0)?;
            // int32 negatives are sign-extended to 64 bits on the wire.
            Value::from(r.varint()? as i64)
        }
        FieldType::Float => match wire {
            1 => {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::from(f64::from_le_bytes(a))
            }
            5 => {
                let b = r.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Value::from(f64::from(f32::from_le_bytes(a)))
            }
            _ => return Err(r.err("unexpected wire type for a float")),
        },
        FieldType::Message(name) => {
            expect(r, 2)?;
            let payload = r.bytes()?;
            return decode_special(payload, name);
        }
    }))
}

/// Decode a message value, mapping Kubernetes' special types to their JSON
/// forms.
fn decode_special(payload: &[u8], name: &str) -> Result<Option<Value>, ProtobufError> {
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.";
    let value = match name.strip_prefix(meta) {
        Some("Time") => time(payload, name, false)?,
        Some("MicroTime") => time(payload, name, true)?,
        Some("Duration") => {
            let fields = scalar_fields(payload, name)?;
            Value::String(go_duration(fields.int(1)))
        }
        Some("FieldsV1") => raw_json(payload, name)?,
        _ => match name {
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
                let fields = scalar_fields(payload, name)?;
                Value::String(fields.string(1).unwrap_or_else(|| "0".into()))
            }
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
                let fields = scalar_fields(payload, name)?;
                if fields.int(1) == 1 {
                    Value::String(fields.string(3).unwrap_or_default())
                } else {
                    Value::from(fields.int(2) as i32)
                }
            }
            "io.k8s.apimachinery.pkg.runtime.RawExtension" => raw_json(payload, name)?,
            _ => {
                let Some(def) = catalog().get(name) else {
                    return Ok(None);
                };
                let obj = decode_message(payload, def)?;
                if def.list_wrapper {
                    obj.into_iter()
                        .next()
                        .map(|(_, v)| v)
                        .unwrap_or(Value::Array(Vec::new()))
                } else {
                    Value::Object(obj)
                }
            }
        },
    };
    Ok(Some(value))
}

/// The scalar fields of a small message, by number.
struct ScalarFields {
    ints: Vec<(u32, i64)>,
    strings: Vec<(u32, Vec<u8>)>,
}

impl ScalarFields {
    fn int(&self, n: u32) -> i64 {
        self.ints
            .iter()
            .rev()
            .find(|(f, _)| *f == n)
            .map_or(0, |(_, v)| *v)
    }

    fn string(&self, n: u32) -> Option<String> {
        self.strings
            .iter()
            .rev()
            .find(|(f, _)| *f == n)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

fn scalar_fields(payload: &[u8], context: &str) -> Result<ScalarFields, ProtobufError> {
    let mut out = ScalarFields {
        ints: Vec::new(),
        strings: Vec::new(),
    };
    let mut r = Reader::new(payload, context);
    while !r.done() {
        let (field, wire) = r.key()?;
        match wire {
            0 => out.ints.push((field, r.varint()? as i64)),
            2 => out.strings.push((field, r.bytes()?.to_vec())),
            w => r.skip(w)?,
        }
    }
    Ok(out)
}

fn time(payload: &[u8], context: &str, micro: bool) -> Result<Value, ProtobufError> {
    if payload.is_empty() {
        return Ok(Value::Null);
    }
    let fields = scalar_fields(payload, context)?;
    let nanos = i32::try_from(fields.int(2)).unwrap_or(0);
    let ts = jiff::Timestamp::new(fields.int(1), if micro { nanos } else { 0 }).map_err(|_| {
        ProtobufError::Malformed {
            context: context.to_string(),
            reason: "timestamp out of range",
        }
    })?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(ts.strftime(format).to_string()))
}

/// `RawExtension` / `FieldsV1`: field 1 holds JSON (or a nested protobuf object).
fn raw_json(payload: &[u8], context: &str) -> Result<Value, ProtobufError> {
    let fields = scalar_fields(payload, context)?;
    let raw = fields
        .strings
        .iter()
        .rev()
        .find(|(f, _)| *f == 1)
        .map(|(_, v)| v.as_slice())
        .unwrap_or_default();
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(MAGIC) {
        return decode(raw);
    }
    Ok(serde_json::from_slice(raw).unwrap_or(Value::Null))
}

/// Go's `time.Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `500ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let text = format!("{whole}.{rest:0digits$}");
        text.trim_end_matches('0').to_string()
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let hours = u / 3_600_000_000_000;
    let minutes = (u / 60_000_000_000) % 60;
    let seconds = frac(u % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

#[cfg(test)]
mod tests;
