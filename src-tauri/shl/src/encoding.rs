//! The text encodings every parser reads: strict base64url (RFC 4648 §5, as JOSE and the SHL
//! payload use it), JSON bounded in nesting before serde_json sees it, typed member access.

use data_encoding::BASE64URL_NOPAD;
use serde_json::{Map, Value};

use crate::error::{Result, ShlError};

/// Decodes unpadded base64url (RFC 4648 §5) strictly: no padding, no whitespace, no other
/// alphabet, canonical trailing bits. JOSE (RFC 7515 §2) and the SHL payload both use it.
pub(crate) fn b64_decode(s: &str, what: &'static str) -> Result<Vec<u8>> {
    BASE64URL_NOPAD
        .decode(s.as_bytes())
        .map_err(|_| ShlError::Base64 { what })
}

/// Unpadded base64url.
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

/// Whether `s` is made of base64url characters only.
pub(crate) fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Refuses JSON nested deeper than `max` arrays/objects, before serde_json sees it (serde_json
/// stops at 128 itself; this keeps every structure far below and fails with our error).
/// Strings are skipped, escapes included.
pub(crate) fn check_depth(bytes: &[u8], max: usize, what: &'static str) -> Result<()> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ShlError::Json {
                        what,
                        reason: "nested too deeply",
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses `bytes` as one JSON value no deeper than `max_depth`.
pub(crate) fn parse_json(bytes: &[u8], max_depth: usize, what: &'static str) -> Result<Value> {
    check_depth(bytes, max_depth, what)?;
    serde_json::from_slice(bytes).map_err(|e| ShlError::Json {
        what,
        reason: match e.classify() {
            serde_json::error::Category::Eof => "it ends early",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Io => "read error",
        },
    })
}

/// Parses `bytes` as a JSON object no deeper than `max_depth`.
pub(crate) fn parse_object(
    bytes: &[u8],
    max_depth: usize,
    what: &'static str,
) -> Result<Map<String, Value>> {
    match parse_json(bytes, max_depth, what)? {
        Value::Object(m) => Ok(m),
        _ => Err(ShlError::Json {
            what,
            reason: "not a JSON object",
        }),
    }
}

/// Typed access to the members of one JSON object, with errors naming the object and field.
pub(crate) struct Fields<'a> {
    pub map: &'a Map<String, Value>,
    pub what: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>, what: &'static str) -> Self {
        Self { map, what }
    }

    pub fn err(&self, field: &'static str, reason: &'static str) -> ShlError {
        ShlError::InvalidField {
            what: self.what,
            field,
            reason,
        }
    }

    /// An optional string member (`null` counts as absent).
    pub fn opt_str(&self, field: &'static str) -> Result<Option<&'a str>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(field, "must be a string")),
        }
    }

    /// A required string member.
    pub fn req_str(&self, field: &'static str) -> Result<&'a str> {
        self.opt_str(field)?
            .ok_or_else(|| self.err(field, "is missing"))
    }

    /// An optional string member of at most `max` bytes.
    pub fn opt_str_max(&self, field: &'static str, max: usize) -> Result<Option<&'a str>> {
        match self.opt_str(field)? {
            Some(s) if s.len() > max => Err(self.err(field, "is too long")),
            other => Ok(other),
        }
    }

    /// An optional non-negative time in seconds since the epoch: an integer, or a finite
    /// non-negative number below 2^63 whose fraction is dropped (JavaScript producers write
    /// `Date.now() / 1000`). RFC 7519 §2 "NumericDate" allows fractions.
    pub fn opt_epoch(&self, field: &'static str) -> Result<Option<u64>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return Ok(Some(u));
                }
                match n.as_f64() {
                    Some(f) if (0.0..9.223_372_036_854_775e18).contains(&f) => {
                        // In range: the cast truncates the fraction.
                        Ok(Some(f as u64))
                    }
                    _ => Err(self.err(field, "must be a non-negative time in seconds")),
                }
            }
            Some(_) => Err(self.err(field, "must be a number")),
        }
    }

    /// An optional positive integer (`1.0` accepted as 1).
    pub fn opt_pos_int(&self, field: &'static str) -> Result<Option<u64>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                let v = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f < 9.0e15)
                        // Exact: an integer below 2^53.
                        .map(|f| f as u64)
                });
                match v {
                    Some(v) if v >= 1 => Ok(Some(v)),
                    _ => Err(self.err(field, "must be a positive integer")),
                }
            }
            Some(_) => Err(self.err(field, "must be a number")),
        }
    }
}

/// ASCII-case-insensitive `strip_prefix`.
pub(crate) fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_check_skips_strings() {
        assert!(check_depth(br#"{"a":"[[[[[[[[[[[["}"#, 2, "t").is_ok());
        assert!(check_depth(br#"{"a":"\"[[[[","b":[1]}"#, 2, "t").is_ok());
        assert!(check_depth(b"[[[", 2, "t").is_err());
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(b64_decode("AQ", "t").unwrap(), vec![1]);
        assert!(b64_decode("AQ==", "t").is_err());
        assert!(b64_decode("AR", "t").is_err()); // non-canonical trailing bits
        assert!(b64_decode("A+", "t").is_err());
    }
}
