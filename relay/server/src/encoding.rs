//! Wire encodings shared by every route (docs/relay-formats.md "Conventions"): unpadded
//! base64url for binary fields, 32 lowercase hex characters for ids, big-endian integers.

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};

use crate::error::{RelayError, Result};

/// Length of every random id (share, blob, upload, mailbox).
pub const ID_LEN: usize = 16;

/// Encodes bytes as unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

/// Decodes an unpadded base64url field named `what`.
pub fn unb64(what: &'static str, s: &str) -> Result<Vec<u8>> {
    BASE64URL_NOPAD
        .decode(s.as_bytes())
        .map_err(|_| RelayError::bad("bad_base64", format!("{what} is not unpadded base64url")))
}

/// Decodes a base64url field that must be exactly `N` bytes.
pub fn unb64_fixed<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N]> {
    let v = unb64(what, s)?;
    v.try_into()
        .map_err(|_| RelayError::bad("bad_length", format!("{what} must be {N} bytes")))
}

/// Encodes an id as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    HEXLOWER.encode(bytes)
}

/// Parses a path id of `N` bytes written as `2N` lowercase hex characters.
pub fn parse_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N]> {
    let bad = || {
        RelayError::bad(
            "bad_id",
            format!("{what} must be {} lowercase hex characters", 2 * N),
        )
    };
    if s.len() != 2 * N {
        return Err(bad());
    }
    let v = HEXLOWER.decode(s.as_bytes()).map_err(|_| bad())?;
    v.try_into().map_err(|_| bad())
}

/// Parses a 16-byte id from a path segment.
pub fn parse_id(what: &'static str, s: &str) -> Result<[u8; ID_LEN]> {
    parse_hex::<ID_LEN>(what, s)
}

/// Fresh random bytes from the OS.
pub fn random<const N: usize>() -> [u8; N] {
    use rand_core::{OsRng, RngCore};
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A big-endian reader over a byte string that never panics.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`; errors name `what`.
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Self { buf, what }
    }

    fn short(&self) -> RelayError {
        RelayError::bad("truncated", format!("{} is truncated", self.what))
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.short());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// Takes exactly `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        s.try_into().map_err(|_| self.short())
    }

    /// Reads a u8.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a `str16` (u16 length + UTF-8).
    pub fn str16(&mut self) -> Result<&'a str> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map_err(|_| RelayError::bad("bad_utf8", format!("{} has invalid UTF-8", self.what)))
    }

    /// Bytes consumed so far are `total - remaining`.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails on trailing bytes.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(RelayError::bad(
                "trailing_bytes",
                format!("{} has trailing bytes", self.what),
            ))
        }
    }
}

/// Appends a `str16`; fails if the string is longer than `u16::MAX`.
pub fn put_str16(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let n = u16::try_from(s.len())
        .map_err(|_| RelayError::bad("too_long", "string longer than 65535 bytes"))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends a `bytes32`; fails if longer than `u32::MAX`.
pub fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) -> Result<()> {
    let n = u32::try_from(b.len())
        .map_err(|_| RelayError::bad("too_long", "byte string longer than 4 GiB"))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// Converts a u64 wire value to the i64 the databases store; larger values are refused.
pub fn to_db(what: &'static str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| RelayError::bad("out_of_range", format!("{what} is too large")))
}

/// Converts a stored i64 back (negative values mean corruption).
pub fn from_db(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| RelayError::Storage("negative value in database".into()))
}

/// Parses a JSON body, answering 400 `bad_json` when it is malformed. The message says what
/// kind of error and where (line and column), never serde's text: that quotes the client's
/// field names and values back ("unknown field `...`", "invalid type: string \"...\"").
///
/// A whole number written with a fraction or exponent (`7200.0`, `1e3`) is the same JSON
/// number as the integer (RFC 8259 section 6 does not tell them apart, nor does the OpenAPI
/// document's `integer`), so it is accepted where the schema wants an integer: when the strict
/// parse fails on the data, such numbers are rewritten as integers and the body is read again.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    use serde_json::error::Category;
    // Every JSON body of the API is an object; serde would also read a struct from an array
    // of its fields in order (`[]` for a struct whose fields all have defaults).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(RelayError::bad(
            "bad_json",
            "malformed JSON body: the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .or_else(|e| {
            if e.classify() == Category::Data
                && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body)
                && whole_floats_to_integers(&mut v)
                && let Ok(t) = serde_json::from_value(v)
            {
                return Ok(t);
            }
            Err(e)
        })
        .map_err(|e| {
            let what = match e.classify() {
                Category::Data => "fields or types do not match the route's schema",
                Category::Eof => "truncated",
                Category::Syntax | Category::Io => "syntax error",
            };
            RelayError::bad(
                "bad_json",
                format!(
                    "malformed JSON body: {what} at line {} column {}",
                    e.line(),
                    e.column()
                ),
            )
        })
}

/// Rewrites every whole number within ±2^53 (where `f64` is exact) that was written as a float
/// into an integer; says whether it changed anything.
fn whole_floats_to_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match v {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            if f.fract() != 0.0 || f.abs() > EXACT {
                return false;
            }
            // In range and whole: the casts are exact.
            *v = if f < 0.0 {
                Value::from(f as i64)
            } else {
                Value::from(f as u64)
            };
            true
        }
        Value::Array(a) => a
            .iter_mut()
            .fold(false, |c, x| whole_floats_to_integers(x) | c),
        Value::Object(o) => o
            .values_mut()
            .fold(false, |c, x| whole_floats_to_integers(x) | c),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct T {
        n: u64,
        list: Vec<u32>,
    }

    #[test]
    fn whole_floats_are_integers() {
        let t: T = parse_json(br#"{"n": 7200.0, "list": [1e1, 2]}"#).unwrap();
        assert_eq!(
            t,
            T {
                n: 7200,
                list: vec![10, 2]
            }
        );
        for bad in [
            r#"{"n": 7200.5, "list": []}"#,
            r#"{"n": -1.0, "list": []}"#,
            r#"{"n": 1e300, "list": []}"#,
            r#"{"n": "7", "list": []}"#,
            r#"[7200, []]"#,
            r#""#,
        ] {
            let e = parse_json::<T>(bad.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    e,
                    RelayError::BadRequest {
                        code: "bad_json",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }
}
