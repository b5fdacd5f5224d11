//! JWE compact serialization with `alg: dir` and `enc: A256GCM`: every SHL file.
//!
//! SHL "Encrypting and Decrypting Files": files are "symmetrically encrypted with a SMART
//! Health Links-specific key ... using JSON Web Encryption (JOSE JWE) compact serialization
//! with `"alg": "dir"`, `"enc": "A256GCM"`, and a `cty` header indicating the content type";
//! "The JWE MAY include a `zip` header with the value `DEF`" (raw DEFLATE, RFC 1951).
//!
//! Compact form (RFC 7516 §7.1): `BASE64URL(header) . BASE64URL(encrypted key) . BASE64URL(IV)
//! . BASE64URL(ciphertext) . BASE64URL(tag)`; with `dir` the encrypted key is empty (RFC 7518
//! §4.5); the AAD is the header's base64url text as received (RFC 7516 §5.2 step 14); A256GCM
//! uses a 96-bit IV and a 128-bit tag (RFC 7518 §5.3).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use rand_core::{OsRng, RngCore};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::encoding::{Fields, b64_decode, b64_encode, parse_object};
use crate::error::{Result, ShlError, echo};
use crate::limits::{MAX_HEADER_JSON_DEPTH, MAX_HEADER_LEN, MAX_JWE_LEN, MAX_PLAINTEXT_LEN};
use crate::link::ShlKey;
use crate::zip::{deflate_raw, inflate_raw};

const WHAT: &str = "JWE";
const HEADER: &str = "JWE header";

/// What the JWE's protected header says (only the members this crate reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JweHeader {
    /// `cty`: the content type of the plaintext, when given.
    pub cty: Option<String>,
    /// `kid`: with SHL producers, the key's RFC 7638 thumbprint ([`ShlKey::thumbprint`]).
    pub kid: Option<String>,
    /// `zip: DEF`: the plaintext was raw-DEFLATE-compressed before encryption.
    pub zip: bool,
}

/// A decrypted JWE. The plaintext is zeroed on drop.
pub struct Decrypted {
    /// The protected header.
    pub header: JweHeader,
    /// The plaintext (inflated when `zip: DEF`).
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decrypted")
            .field("header", &self.header)
            .field("len", &self.plaintext.len())
            .finish()
    }
}

/// The five parts, checked for shape and sizes, header parsed.
struct Parts<'a> {
    header_b64: &'a str,
    header: JweHeader,
    iv: [u8; 12],
    ciphertext_b64: &'a str,
    tag: [u8; 16],
}

fn split(jwe: &str) -> Result<Parts<'_>> {
    let jwe = jwe.trim_ascii();
    if jwe.len() > MAX_JWE_LEN {
        return Err(ShlError::TooLarge {
            what: WHAT,
            max: MAX_JWE_LEN,
        });
    }
    let mut it = jwe.split('.');
    let (Some(h), Some(ek), Some(iv), Some(ct), Some(tag), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err(ShlError::Malformed {
            what: WHAT,
            reason: "a compact JWE has five dot-separated parts",
        });
    };
    let header = parse_header_b64(h)?;
    if !ek.is_empty() {
        return Err(ShlError::Malformed {
            what: WHAT,
            reason: "alg dir has an empty encrypted key",
        });
    }
    let iv = b64_decode(iv, "JWE IV")?;
    let iv: [u8; 12] = iv
        .as_slice()
        .try_into()
        .map_err(|_| ShlError::IvLength { len: iv.len() })?;
    let tag = b64_decode(tag, "JWE tag")?;
    let tag: [u8; 16] = tag
        .as_slice()
        .try_into()
        .map_err(|_| ShlError::TagLength { len: tag.len() })?;
    Ok(Parts {
        header_b64: h,
        header,
        iv,
        ciphertext_b64: ct,
        tag,
    })
}

fn parse_header_b64(h: &str) -> Result<JweHeader> {
    if h.len() > MAX_HEADER_LEN {
        return Err(ShlError::TooLarge {
            what: HEADER,
            max: MAX_HEADER_LEN,
        });
    }
    let json = b64_decode(h, HEADER)?;
    let map = parse_object(&json, MAX_HEADER_JSON_DEPTH, HEADER)?;
    header_from_map(&map)
}

fn header_from_map(map: &Map<String, Value>) -> Result<JweHeader> {
    let f = Fields::new(map, HEADER);
    let alg = f.opt_str("alg")?;
    if alg != Some("dir") {
        return Err(ShlError::UnsupportedAlgorithm {
            what: "JWE alg",
            alg: alg.map_or_else(|| "(missing)".into(), echo),
        });
    }
    let enc = f.opt_str("enc")?;
    if enc != Some("A256GCM") {
        return Err(ShlError::UnsupportedEncryption {
            enc: enc.map_or_else(|| "(missing)".into(), echo),
        });
    }
    if map.contains_key("crit") {
        return Err(ShlError::CriticalHeader { what: WHAT });
    }
    let zip = match map.get("zip") {
        None => false,
        Some(Value::String(z)) if z == "DEF" => true,
        Some(Value::String(z)) => {
            return Err(ShlError::UnsupportedCompression { zip: echo(z) });
        }
        Some(_) => return Err(f.err("zip", "must be a string")),
    };
    Ok(JweHeader {
        cty: f.opt_str_max("cty", 256)?.map(str::to_owned),
        kid: f.opt_str_max("kid", 256)?.map(str::to_owned),
        zip,
    })
}

/// The protected header of a compact JWE, after the same shape checks as [`decrypt`] (no key
/// needed).
pub fn parse_header(jwe: &str) -> Result<JweHeader> {
    Ok(split(jwe)?.header)
}

/// Decrypts a compact JWE under `key`, the plaintext bounded by [`MAX_PLAINTEXT_LEN`].
pub fn decrypt(jwe: &str, key: &ShlKey) -> Result<Decrypted> {
    decrypt_with_limit(jwe, key, MAX_PLAINTEXT_LEN)
}

/// Decrypts a compact JWE under `key`; the ciphertext, and the plaintext after inflating, may
/// be at most `max_plaintext` bytes.
///
/// Errors, in the order checked: [`ShlError::TooLarge`] (the text, the header),
/// [`ShlError::Malformed`] (part count, a non-empty encrypted key), [`ShlError::Base64`],
/// [`ShlError::Json`], [`ShlError::UnsupportedAlgorithm`] (not `dir`),
/// [`ShlError::UnsupportedEncryption`] (not `A256GCM`), [`ShlError::CriticalHeader`],
/// [`ShlError::UnsupportedCompression`] (a `zip` other than `DEF`), [`ShlError::IvLength`],
/// [`ShlError::TagLength`], [`ShlError::TooLarge`] (ciphertext), then
/// [`ShlError::WrongKey`] (authentication failed and `kid` is not this key's thumbprint) or
/// [`ShlError::DecryptionFailed`] (authentication failed otherwise), then
/// [`ShlError::DecompressedTooLarge`] / [`ShlError::Inflate`].
pub fn decrypt_with_limit(jwe: &str, key: &ShlKey, max_plaintext: usize) -> Result<Decrypted> {
    let p = split(jwe)?;
    // base64url of n bytes is ceil(4n/3) characters: refuse before decoding.
    if p.ciphertext_b64.len() > max_plaintext.saturating_mul(4).div_ceil(3) {
        return Err(ShlError::TooLarge {
            what: "JWE ciphertext",
            max: max_plaintext,
        });
    }
    let mut buf = Zeroizing::new(b64_decode(p.ciphertext_b64, "JWE ciphertext")?);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.bytes()));
    let opened = cipher.decrypt_in_place_detached(
        Nonce::from_slice(&p.iv),
        p.header_b64.as_bytes(),
        buf.as_mut_slice(),
        Tag::from_slice(&p.tag),
    );
    if opened.is_err() {
        return Err(match &p.header.kid {
            Some(kid) if *kid != key.thumbprint() => ShlError::WrongKey,
            _ => ShlError::DecryptionFailed,
        });
    }
    let plaintext = if p.header.zip {
        Zeroizing::new(inflate_raw(&buf, max_plaintext)?)
    } else {
        buf
    };
    Ok(Decrypted {
        header: p.header,
        plaintext,
    })
}

/// How [`encrypt`] builds the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncryptOptions<'a> {
    /// `cty`: the plaintext's content type (SHL: "a `cty` header indicating the content type
    /// of the payload").
    pub cty: Option<&'a str>,
    /// Compress with raw DEFLATE first and set `zip: DEF`.
    pub zip: bool,
}

/// Encrypts `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) as a compact JWE under `key`:
/// header `{"alg":"dir","enc":"A256GCM"}` plus `cty` and `zip` as asked and `kid` = the key's
/// thumbprint; a fresh random 96-bit IV each call (SHL "Encrypting and Decrypting Files": "the
/// SHL Sharing Application SHALL ensure a unique nonce ... for each encryption operation").
pub fn encrypt(plaintext: &[u8], key: &ShlKey, opts: &EncryptOptions<'_>) -> Result<String> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(ShlError::TooLarge {
            what: "plaintext",
            max: MAX_PLAINTEXT_LEN,
        });
    }
    let mut header = Map::new();
    header.insert("alg".into(), "dir".into());
    header.insert("enc".into(), "A256GCM".into());
    if let Some(cty) = opts.cty {
        header.insert("cty".into(), cty.into());
    }
    if opts.zip {
        header.insert("zip".into(), "DEF".into());
    }
    header.insert("kid".into(), key.thumbprint().into());
    let header_b64 = b64_encode(Value::Object(header).to_string().as_bytes());

    let mut buf = Zeroizing::new(if opts.zip {
        deflate_raw(plaintext)
    } else {
        plaintext.to_vec()
    });
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.bytes()));
    let tag = cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&iv),
            header_b64.as_bytes(),
            buf.as_mut_slice(),
        )
        // Only fails for plaintexts over 64 GiB, far above the bound checked above.
        .map_err(|_| ShlError::TooLarge {
            what: "plaintext",
            max: MAX_PLAINTEXT_LEN,
        })?;
    Ok(format!(
        "{header_b64}..{}.{}.{}",
        b64_encode(&iv),
        b64_encode(&buf),
        b64_encode(&tag)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> String {
        b64_encode(json.as_bytes())
    }

    #[test]
    fn round_trip_plain_and_zip() {
        let key = ShlKey::generate();
        let text = br#"{"resourceType":"Bundle","type":"document"}"#.repeat(100);
        for zip in [false, true] {
            let opts = EncryptOptions {
                cty: Some("application/fhir+json"),
                zip,
            };
            let jwe = encrypt(&text, &key, &opts).unwrap();
            let d = decrypt(&jwe, &key).unwrap();
            assert_eq!(d.plaintext.as_slice(), text.as_slice());
            assert_eq!(d.header.cty.as_deref(), Some("application/fhir+json"));
            assert_eq!(d.header.zip, zip);
            assert_eq!(d.header.kid, Some(key.thumbprint()));
            assert_eq!(parse_header(&jwe).unwrap(), d.header);
        }
        // Fresh IVs: the same plaintext never gives the same JWE.
        let o = EncryptOptions::default();
        assert_ne!(
            encrypt(b"x", &key, &o).unwrap(),
            encrypt(b"x", &key, &o).unwrap()
        );
    }

    #[test]
    fn wrong_key_vs_tampered() {
        let key = ShlKey::generate();
        let other = ShlKey::generate();
        let jwe = encrypt(b"hello", &key, &EncryptOptions::default()).unwrap();
        assert_eq!(decrypt(&jwe, &other).unwrap_err(), ShlError::WrongKey);
        // Flip a ciphertext bit: same kid, so it is an alteration.
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let mut ct = b64_decode(&parts[3], "t").unwrap();
        ct[0] ^= 1;
        parts[3] = b64_encode(&ct);
        assert_eq!(
            decrypt(&parts.join("."), &key).unwrap_err(),
            ShlError::DecryptionFailed
        );
        // The header is authenticated: an added member changes the AAD.
        let h = header(&format!(
            r#"{{"alg":"dir","enc":"A256GCM","kid":"{}","x":1}}"#,
            key.thumbprint()
        ));
        let mut p2: Vec<&str> = jwe.split('.').collect();
        p2[0] = &h;
        assert_eq!(
            decrypt(&p2.join("."), &key).unwrap_err(),
            ShlError::DecryptionFailed
        );
    }

    #[test]
    fn header_refusals() {
        let key = ShlKey::generate();
        let cases: &[(&str, ShlError)] = &[
            (
                r#"{"alg":"A256KW","enc":"A256GCM"}"#,
                ShlError::UnsupportedAlgorithm {
                    what: "JWE alg",
                    alg: "A256KW".into(),
                },
            ),
            (
                r#"{"enc":"A256GCM"}"#,
                ShlError::UnsupportedAlgorithm {
                    what: "JWE alg",
                    alg: "(missing)".into(),
                },
            ),
            (
                r#"{"alg":"dir","enc":"A128GCM"}"#,
                ShlError::UnsupportedEncryption {
                    enc: "A128GCM".into(),
                },
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM","zip":"GZ"}"#,
                ShlError::UnsupportedCompression { zip: "GZ".into() },
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM","crit":["b64"]}"#,
                ShlError::CriticalHeader { what: WHAT },
            ),
            (
                r#"{"alg":"dir","enc":"A256GCM","cty":7}"#,
                ShlError::InvalidField {
                    what: HEADER,
                    field: "cty",
                    reason: "must be a string",
                },
            ),
            (
                "[]",
                ShlError::Json {
                    what: HEADER,
                    reason: "not a JSON object",
                },
            ),
        ];
        for (h, want) in cases {
            let jwe = format!("{}..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA", header(h));
            assert_eq!(&decrypt(&jwe, &key).unwrap_err(), want, "{h}");
        }
    }

    #[test]
    fn shape_refusals() {
        let key = ShlKey::generate();
        let h = header(r#"{"alg":"dir","enc":"A256GCM"}"#);
        let m = |r| ShlError::Malformed {
            what: WHAT,
            reason: r,
        };
        assert_eq!(
            decrypt("a.b.c", &key).unwrap_err(),
            m("a compact JWE has five dot-separated parts")
        );
        assert_eq!(
            decrypt(&format!("{h}.....",), &key).unwrap_err(),
            m("a compact JWE has five dot-separated parts")
        );
        assert_eq!(
            decrypt(
                &format!("{h}.AA.AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA"),
                &key
            )
            .unwrap_err(),
            m("alg dir has an empty encrypted key")
        );
        assert_eq!(
            decrypt(&format!("{h}..AAAA.AA.AAAAAAAAAAAAAAAAAAAAAA"), &key).unwrap_err(),
            ShlError::IvLength { len: 3 }
        );
        assert_eq!(
            decrypt(&format!("{h}..AAAAAAAAAAAAAAAA.AA.AAAA"), &key).unwrap_err(),
            ShlError::TagLength { len: 3 }
        );
        assert_eq!(
            decrypt(
                &format!("{h}..AAAAAAAAAAAAAAAA.A+.AAAAAAAAAAAAAAAAAAAAAA"),
                &key
            )
            .unwrap_err(),
            ShlError::Base64 {
                what: "JWE ciphertext"
            }
        );
        assert_eq!(
            decrypt_with_limit(
                &format!("{h}..AAAAAAAAAAAAAAAA.AAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA"),
                &key,
                3
            )
            .unwrap_err(),
            ShlError::TooLarge {
                what: "JWE ciphertext",
                max: 3
            }
        );
    }

    #[test]
    fn zip_bomb_is_bounded() {
        let key = ShlKey::generate();
        let jwe = encrypt(
            &vec![0u8; 1 << 20],
            &key,
            &EncryptOptions {
                cty: None,
                zip: true,
            },
        )
        .unwrap();
        assert!(jwe.len() < 4096);
        assert_eq!(
            decrypt_with_limit(&jwe, &key, 1 << 19).unwrap_err(),
            ShlError::DecompressedTooLarge { max: 1 << 19 }
        );
        assert_eq!(
            decrypt_with_limit(&jwe, &key, 1 << 20)
                .unwrap()
                .plaintext
                .len(),
            1 << 20
        );
    }
}
