//! Canonical JSON: the RFC 8785 (JCS) serialization restricted to integers.

use serde_json::{Map, Value};

use crate::error::{ProofError, Result};

/// Largest integer magnitude accepted: 2^53 - 1, the I-JSON limit RFC 8785 inherits (larger
/// values cannot round-trip through IEEE 754 doubles; send them as strings).
pub(crate) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Deepest nesting of arrays and objects accepted.
pub(crate) const MAX_DEPTH: usize = 128;

/// Serialize `value` per RFC 8785 for the integer-only subset: no whitespace, object members
/// sorted by the UTF-16 code units of their names, strings escaped minimally (`\"`, `\\`,
/// `\b \f \n \r \t`, other controls as `\u00xx`, everything else literal), integers in plain
/// decimal. Floats (any number serde_json does not hold as an integer, e.g. `1.0`), integers
/// beyond ±(2^53 - 1) and nesting deeper than 128 levels are rejected.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_value(&mut out, value, 0)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let text = if let Some(u) = n.as_u64() {
                (u <= MAX_SAFE_INTEGER).then(|| u.to_string())
            } else if let Some(i) = n.as_i64() {
                (i.unsigned_abs() <= MAX_SAFE_INTEGER).then(|| i.to_string())
            } else {
                return Err(ProofError::NonCanonicalJson(format!(
                    "{n} is not an integer (floats are not accepted)"
                )));
            };
            let text = text.ok_or_else(|| {
                ProofError::NonCanonicalJson(format!(
                    "{n} is outside ±(2^53 - 1); encode it as a string"
                ))
            })?;
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            let depth = enter(depth)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, depth)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let depth = enter(depth)?;
            write_object(out, map, depth)?;
        }
    }
    Ok(())
}

fn enter(depth: usize) -> Result<usize> {
    if depth >= MAX_DEPTH {
        Err(ProofError::NonCanonicalJson(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )))
    } else {
        Ok(depth + 1)
    }
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, depth: usize) -> Result<()> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
        out.push(b':');
        write_value(out, v, depth)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[b >> 4]);
                out.push(HEX[b & 0xf]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}
