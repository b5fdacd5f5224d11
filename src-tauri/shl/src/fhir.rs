//! FHIR R4 Attachments written inline for a published SMART Health Link (docs/shl.md
//! "Publishing"), and the size a file of a link can reach.
//!
//! SHL "SMART Health Link Manifest" files are `application/fhir+json` resources: a viewer
//! without Carekey has no attachment store to fetch a PDF from, so a stored file goes back into
//! its DocumentReference as FHIR R4 Attachment `data` (base64), with `size` (bytes) and `hash`
//! (base64 SHA-1 of the data), FHIR R4 "Datatypes: Attachment". `Binary` takes its bytes in
//! `Binary.data` (FHIR R4 "Binary"), which has no `size` or `hash`.

use data_encoding::BASE64;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

/// Where one stored file goes back into its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `Binary.data`.
    Binary,
    /// `content[i].attachment` (DocumentReference).
    Content(usize),
}

/// FHIR R4 `Attachment.hash`: the base64 SHA-1 of the data ("Datatypes: Attachment":
/// "The calculated hash of the data using SHA-1. Represented using base64").
pub fn attachment_hash(data: &[u8]) -> String {
    BASE64.encode(&Sha1::digest(data))
}

/// The places of the `n` files a store took out of `resource`, in the order it took them: a
/// `Binary` without `data`, or the `content[].attachment` objects that have no `data` left.
///
/// The store takes the inline `data` of each `content[].attachment` in order; an attachment
/// that only ever had a `url` was not taken but looks the same once the data is gone. When
/// there are more places than files, those without a `url` are preferred (a stored file had
/// data, and a record rarely has both kinds). Fewer places than files: the rest have none.
pub fn stored_slots(resource: &Value, n: usize) -> Vec<Slot> {
    if n == 0 {
        return Vec::new();
    }
    if resource.get("resourceType").and_then(Value::as_str) == Some("Binary") {
        return if resource.get("data").is_none() {
            vec![Slot::Binary]
        } else {
            Vec::new()
        };
    }
    let Some(content) = resource.get("content").and_then(Value::as_array) else {
        return Vec::new();
    };
    let empty: Vec<(usize, &Map<String, Value>)> = content
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.get("attachment")?.as_object()?)))
        .filter(|(_, a)| !a.contains_key("data"))
        .collect();
    let without_url: Vec<usize> = empty
        .iter()
        .filter(|(_, a)| !a.contains_key("url"))
        .map(|(i, _)| *i)
        .collect();
    let chosen: Vec<usize> = if empty.len() > n && without_url.len() >= n {
        without_url
    } else {
        empty.iter().map(|(i, _)| *i).collect()
    };
    chosen.into_iter().take(n).map(Slot::Content).collect()
}

/// Writes `data` into `resource` at `slot`: `data`, `size` and `hash` for an Attachment,
/// `data` for a Binary. False when the slot is not there.
pub fn put_inline(resource: &mut Value, slot: Slot, data: &[u8]) -> bool {
    match slot {
        Slot::Binary => match resource.as_object_mut() {
            Some(o) => {
                o.insert("data".into(), Value::String(BASE64.encode(data)));
                true
            }
            None => false,
        },
        Slot::Content(i) => {
            let Some(att) = resource
                .get_mut("content")
                .and_then(|c| c.get_mut(i))
                .and_then(|c| c.get_mut("attachment"))
                .and_then(Value::as_object_mut)
            else {
                return false;
            };
            att.insert("data".into(), Value::String(BASE64.encode(data)));
            // FHIR R4 Attachment.size is "unsignedInt" (bytes before base64).
            att.insert("size".into(), Value::from(data.len() as u64));
            att.insert("hash".into(), Value::String(attachment_hash(data)));
            true
        }
    }
}

/// How many bytes `data` of `len` bytes adds to a resource's JSON at most: its base64, the
/// quotes and member names, and `size` and `hash` with their values.
pub fn inline_len_bound(len: usize) -> usize {
    len.div_ceil(3)
        .saturating_mul(4)
        .saturating_add(INLINE_OVERHEAD)
}

/// `,"data":""`, `,"size":<20 digits>`, `,"hash":"<28>"`, rounded up.
const INLINE_OVERHEAD: usize = 96;

/// The longest compact JWE [`crate::jwe::encrypt`] makes of a plaintext of `len` bytes, whatever
/// the content: DEFLATE can grow incompressible data (a PDF, base64 of one) by its stored-block
/// headers, 5 bytes per 64 KiB (RFC 1951 §3.2.4), bounded here by 1/1024 plus 64; then
/// base64url of the ciphertext, the header (at most 512 characters: alg, enc, cty, zip, the
/// 43-character kid), IV, tag and dots.
pub fn jwe_len_bound(len: usize) -> usize {
    let deflated = len.saturating_add(len / 1024).saturating_add(64);
    deflated
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_add(JWE_FIXED_PARTS)
}

/// Header (≤ 512), IV (16), tag (22) and the four dots of a compact JWE, rounded up.
const JWE_FIXED_PARTS: usize = 600;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwe::{self, EncryptOptions};
    use crate::link::ShlKey;
    use serde_json::json;

    #[test]
    fn the_hash_is_base64_sha1() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d (FIPS 180-2 example).
        assert_eq!(attachment_hash(b"abc"), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
    }

    #[test]
    fn slots_follow_the_content_order_and_prefer_places_without_url() {
        let r = json!({"resourceType": "DocumentReference", "content": [
            {"attachment": {"contentType": "text/plain", "url": "https://x.example/a"}},
            {"attachment": {"contentType": "application/pdf"}},
            {"attachment": {"contentType": "image/png", "data": "AA=="}},
            {"attachment": {"contentType": "image/jpeg"}},
        ]});
        assert_eq!(
            stored_slots(&r, 2),
            vec![Slot::Content(1), Slot::Content(3)]
        );
        assert_eq!(
            stored_slots(&r, 3),
            vec![Slot::Content(0), Slot::Content(1), Slot::Content(3)]
        );
        assert_eq!(stored_slots(&r, 0), Vec::new());
        let b = json!({"resourceType": "Binary", "contentType": "application/pdf"});
        assert_eq!(stored_slots(&b, 1), vec![Slot::Binary]);
        assert!(stored_slots(&json!({"resourceType": "Observation"}), 1).is_empty());
        assert!(stored_slots(&json!({"content": "not a list"}), 1).is_empty());
    }

    #[test]
    fn inline_writes_data_size_and_hash() {
        let mut r = json!({"resourceType": "DocumentReference",
            "content": [{"attachment": {"contentType": "application/pdf", "size": 1}}]});
        assert!(put_inline(&mut r, Slot::Content(0), b"%PDF-1.4\n"));
        let a = &r["content"][0]["attachment"];
        assert_eq!(a["data"], BASE64.encode(b"%PDF-1.4\n"));
        assert_eq!(a["size"], 9);
        assert_eq!(a["hash"], attachment_hash(b"%PDF-1.4\n"));
        assert!(!put_inline(&mut r, Slot::Content(5), b"x"));
        let before = serde_json::to_vec(&r).expect("json").len();
        let mut again = r.clone();
        assert!(put_inline(&mut again, Slot::Content(0), &[7u8; 1000]));
        let after = serde_json::to_vec(&again).expect("json").len();
        assert!(after - before <= inline_len_bound(1000));
    }

    #[test]
    fn the_jwe_bound_holds_for_incompressible_data() {
        let key = ShlKey::generate();
        let mut noise = vec![0u8; 300_000];
        let mut x: u32 = 0x9e37_79b9;
        for b in &mut noise {
            // xorshift: incompressible enough for DEFLATE.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x >> 24) as u8;
        }
        for len in [0, 1, 1000, 65_535, 65_536, noise.len()] {
            let j = jwe::encrypt(
                &noise[..len],
                &key,
                &EncryptOptions {
                    cty: Some("application/fhir+json"),
                    zip: true,
                },
            )
            .expect("encrypt");
            assert!(j.len() <= jwe_len_bound(len), "{len}: {}", j.len());
        }
    }
}
