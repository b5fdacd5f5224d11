//! `zip: DEF`: raw DEFLATE (RFC 1951, no zlib or gzip header), as JWE (RFC 7516 §4.1.3) and
//! SMART Health Cards (SHC "Health Cards are Compact") use it.
//!
//! Inflating is bounded: output beyond `max` bytes stops the decoder with
//! [`ShlError::DecompressedTooLarge`], so a small hostile input cannot expand into gigabytes.

use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_with_limit};

use crate::error::{Result, ShlError};

/// Inflates raw DEFLATE `data` to at most `max` bytes.
///
/// Errors: [`ShlError::DecompressedTooLarge`] past `max`; [`ShlError::Inflate`] for a corrupt or
/// truncated stream.
pub fn inflate_raw(data: &[u8], max: usize) -> Result<Vec<u8>> {
    match decompress_to_vec_with_limit(data, max) {
        Ok(out) => Ok(out),
        Err(e) if e.status == TINFLStatus::HasMoreOutput => {
            Err(ShlError::DecompressedTooLarge { max })
        }
        Err(_) => Err(ShlError::Inflate),
    }
}

/// Compresses `data` as raw DEFLATE (level 9: these payloads are small and go into QR codes).
pub fn deflate_raw(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, 9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = b"hello hello hello hello".repeat(50);
        let z = deflate_raw(&text);
        assert!(z.len() < text.len());
        assert_eq!(inflate_raw(&z, text.len()).unwrap(), text);
    }

    #[test]
    fn limit_is_exact() {
        let data = vec![0u8; 10_000];
        let z = deflate_raw(&data);
        assert_eq!(inflate_raw(&z, 10_000).unwrap().len(), 10_000);
        assert_eq!(
            inflate_raw(&z, 9_999),
            Err(ShlError::DecompressedTooLarge { max: 9_999 })
        );
    }

    #[test]
    fn corrupt_and_truncated() {
        let z = deflate_raw(&b"some text that compresses".repeat(20));
        assert_eq!(
            inflate_raw(&z[..z.len() / 2], 1 << 20),
            Err(ShlError::Inflate)
        );
        assert_eq!(
            inflate_raw(&[0xff, 0xff, 0xff], 1 << 20),
            Err(ShlError::Inflate)
        );
        assert_eq!(inflate_raw(&[], 1 << 20), Err(ShlError::Inflate));
    }
}
