//! One encode/decode trait for every wire object (docs/protocol.md "Conventions").
//!
//! Integers are big-endian; variable fields carry a length prefix; every top-level object starts
//! with its version byte. [`Wire::from_bytes`] rejects trailing bytes, so one byte string has at
//! most one meaning.

use crate::error::{Error, Result};

/// A type with one canonical byte encoding.
pub trait Wire: Sized {
    /// Name used in error messages.
    const WHAT: &'static str;

    /// Appends the encoding of `self`.
    fn encode(&self, w: &mut Writer);

    /// Reads one value, leaving the reader after it.
    fn decode(r: &mut Reader<'_>) -> Result<Self>;

    /// The whole encoding.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }

    /// Decodes exactly one value: trailing bytes are an error.
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, Self::WHAT);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// Append-only encoder.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Raw bytes with no length (fixed-size fields).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// u16 length + bytes. Callers keep fields below 64 KiB; longer input is a programming
    /// error caught by the `str16`/`bytes16` length checks of the constructors.
    pub fn bytes16(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.raw(&v[..usize::from(len)]);
    }
    /// u32 length + bytes.
    pub fn bytes32(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.raw(&v[..len as usize]);
    }
    /// u16 length + UTF-8.
    pub fn str16(&mut self, v: &str) {
        self.bytes16(v.as_bytes());
    }
    /// A nested wire object.
    pub fn obj<T: Wire>(&mut self, v: &T) {
        v.encode(self);
    }
}

/// Bounds-checked decoder over a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader whose errors name `what`.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Error unless everything was read.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                what: self.what,
                extra: self.buf.len(),
            })
        }
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Truncated { what: self.what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }
    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// Big-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Big-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// u16 length + bytes.
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    /// u32 length + bytes.
    pub fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()?;
        self.take(n as usize)
    }
    /// u16 length + UTF-8.
    pub fn str16(&mut self) -> Result<String> {
        let b = self.bytes16()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.malformed("invalid UTF-8"))
    }
    /// The version byte, checked against the only version this build writes.
    pub fn version(&mut self, supported: u8) -> Result<()> {
        let v = self.u8()?;
        if v == supported {
            Ok(())
        } else {
            Err(Error::UnknownVersion {
                what: self.what,
                version: v,
            })
        }
    }
    /// A nested wire object.
    pub fn obj<T: Wire>(&mut self) -> Result<T> {
        T::decode(self)
    }
    /// A malformed-input error naming this reader's structure.
    pub fn malformed(&self, reason: &'static str) -> Error {
        Error::Malformed {
            what: self.what,
            reason,
        }
    }
    /// A boolean encoded as 0 or 1; anything else is malformed.
    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.malformed("boolean is neither 0 nor 1")),
        }
    }
}

/// Encodes an `Option` as a presence byte then the value.
pub fn write_opt<T: Wire>(w: &mut Writer, v: &Option<T>) {
    match v {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            v.encode(w);
        }
    }
}

/// Decodes what [`write_opt`] wrote.
pub fn read_opt<T: Wire>(r: &mut Reader<'_>) -> Result<Option<T>> {
    if r.bool()? {
        Ok(Some(T::decode(r)?))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[0, 5, 1, 2], "test");
        assert_eq!(r.bytes16(), Err(Error::Truncated { what: "test" }));
        let mut r = Reader::new(&[0xff; 3], "test");
        assert!(r.u32().is_err());
        let mut r = Reader::new(&[2], "test");
        assert!(r.bool().is_err());
    }
}
