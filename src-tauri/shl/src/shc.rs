//! SMART Health Cards: `shc:/` QR text, the ES256 JWS, its payload, verification against an
//! issuer's keys, and `.smart-health-card` files.
//!
//! SHC "Health Cards are encoded as Compact Serialization JSON Web Signatures (JWS)" and
//! "Health Cards are Compact": header `alg: ES256`, `zip: DEF`, `kid` = the key's thumbprint;
//! the payload is raw-DEFLATE-compressed minified JSON `{iss, nbf, vc: {type,
//! credentialSubject: {fhirVersion, fhirBundle}}}`.

use serde_json::{Map, Value};

pub use crate::jwk::{IssuerKey, Jwk, Jwks, RejectedKey, TrustStore};

use crate::encoding::{Fields, b64_decode, b64_encode, parse_object, strip_prefix_ci};
use crate::error::{Result, ShlError, echo};
use crate::limits::{
    MAX_CARD_PAYLOAD_LEN, MAX_CARDS_PER_FILE, MAX_CONTENT_JSON_DEPTH, MAX_HEADER_JSON_DEPTH,
    MAX_HEADER_LEN, MAX_JWS_LEN, MAX_SHC_CHUNKS, MAX_SHC_TEXT_LEN,
};
use crate::zip::{deflate_raw, inflate_raw};

/// The `shc:/` scheme prefix.
pub const SHC_PREFIX: &str = "shc:/";

/// The credential type every SMART Health Card has (SHC "Health Cards are encoded as Compact
/// Serialization JSON Web Signatures": "the `https://smarthealth.cards#health-card` SHALL be
/// present").
pub const HEALTH_CARD_TYPE: &str = "https://smarthealth.cards#health-card";

// ---------------------------------------------------------------------------------------------
// shc:/ numeric QR text
// ---------------------------------------------------------------------------------------------

/// One scanned `shc:/` QR: a whole JWS, or one chunk of the deprecated chunked form.
#[derive(Clone, PartialEq, Eq)]
pub struct QrChunk {
    /// 1-based chunk index (1 for an unchunked code).
    pub index: usize,
    /// Number of chunks (1 for an unchunked code).
    pub total: usize,
    /// This chunk's part of the JWS.
    pub jws_part: String,
}

impl core::fmt::Debug for QrChunk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QrChunk")
            .field("index", &self.index)
            .field("total", &self.total)
            .field("len", &self.jws_part.len())
            .finish()
    }
}

/// Decodes one `shc:/` QR text (SHC "Encoding QRs"): `shc:/` (any case), then, for the
/// deprecated chunked form, `C/N/`, then digit pairs, each `Ord(c) - 45` of one JWS character.
///
/// Bounds: at most [`MAX_SHC_TEXT_LEN`] bytes, at most [`MAX_SHC_CHUNKS`] chunks. Errors:
/// [`ShlError::TooLarge`], [`ShlError::ShcNumeric`] (no prefix, odd digit count, a non-digit,
/// a pair above 77, a character no JWS has), [`ShlError::ShcChunks`] (a bad `C/N/`).
pub fn decode_qr(text: &str) -> Result<QrChunk> {
    if text.len() > MAX_SHC_TEXT_LEN {
        return Err(ShlError::TooLarge {
            what: "shc:/ text",
            max: MAX_SHC_TEXT_LEN,
        });
    }
    let num = |reason| ShlError::ShcNumeric { reason };
    let rest =
        strip_prefix_ci(text.trim(), SHC_PREFIX).ok_or(num("it does not start with shc:/"))?;
    let (index, total, digits) = match rest.split_once('/') {
        None => (1, 1, rest),
        Some((c, tail)) => {
            let (n, digits) = tail.split_once('/').ok_or(ShlError::ShcChunks {
                reason: "a chunked code is shc:/C/N/ followed by digits",
            })?;
            let (c, n) = (chunk_number(c)?, chunk_number(n)?);
            if c > n {
                return Err(ShlError::ShcChunks {
                    reason: "the chunk index is above the chunk count",
                });
            }
            (c, n, digits)
        }
    };
    if digits.is_empty() {
        return Err(num("no digits"));
    }
    if digits.len() % 2 != 0 {
        return Err(num("an odd number of digits"));
    }
    let mut jws_part = String::with_capacity(digits.len() / 2);
    for pair in digits.as_bytes().chunks_exact(2) {
        let (a, b) = (pair[0], pair[1]);
        if !a.is_ascii_digit() || !b.is_ascii_digit() {
            return Err(num("a character that is not a digit"));
        }
        let v = (a - b'0') * 10 + (b - b'0');
        if v > 77 {
            return Err(num("a digit pair above 77"));
        }
        let c = char::from(v + 45);
        if !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(num("a character that cannot be in a JWS"));
        }
        jws_part.push(c);
    }
    Ok(QrChunk {
        index,
        total,
        jws_part,
    })
}

fn chunk_number(s: &str) -> Result<usize> {
    let bad = ShlError::ShcChunks {
        reason: "chunk numbers are 1 to 16 without leading zeros",
    };
    if s.is_empty() || s.len() > 2 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_SHC_CHUNKS).contains(&n) => Ok(n),
        _ => Err(bad),
    }
}

/// The JWS of one or more scanned `shc:/` texts, in any order (a single unchunked code, or all
/// chunks of a chunked one). Errors: those of [`decode_qr`], and [`ShlError::ShcChunks`] when
/// totals differ, an index repeats with other content, or chunks are missing.
pub fn assemble_qr<S: AsRef<str>>(texts: &[S]) -> Result<String> {
    let mut set = ChunkSet::default();
    let mut done = None;
    for t in texts {
        done = set.add(t.as_ref())?;
    }
    done.ok_or(ShlError::ShcChunks {
        reason: "chunks are missing",
    })
}

/// Collects the chunks of a chunked `shc:/` code as they are scanned.
#[derive(Debug, Default, Clone)]
pub struct ChunkSet {
    total: Option<usize>,
    parts: Vec<Option<String>>,
}

impl ChunkSet {
    /// Adds one scanned text; `Some(jws)` once every chunk is in. A chunk scanned twice is
    /// fine when it is the same.
    pub fn add(&mut self, text: &str) -> Result<Option<String>> {
        let c = decode_qr(text)?;
        match self.total {
            None => {
                self.total = Some(c.total);
                self.parts = vec![None; c.total];
            }
            Some(t) if t != c.total => {
                return Err(ShlError::ShcChunks {
                    reason: "chunks disagree on the chunk count",
                });
            }
            Some(_) => {}
        }
        let slot = self.parts.get_mut(c.index - 1).ok_or(ShlError::ShcChunks {
            reason: "the chunk index is above the chunk count",
        })?;
        match slot {
            Some(existing) if *existing != c.jws_part => {
                return Err(ShlError::ShcChunks {
                    reason: "the same chunk was scanned with different content",
                });
            }
            _ => *slot = Some(c.jws_part),
        }
        if self.parts.iter().all(Option::is_some) {
            let jws: String = self.parts.iter().flatten().map(String::as_str).collect();
            if jws.len() > MAX_JWS_LEN {
                return Err(ShlError::TooLarge {
                    what: "JWS",
                    max: MAX_JWS_LEN,
                });
            }
            return Ok(Some(jws));
        }
        Ok(None)
    }

    /// How many of how many chunks are in (`(0, 0)` before the first).
    pub fn progress(&self) -> (usize, usize) {
        (
            self.parts.iter().filter(|p| p.is_some()).count(),
            self.total.unwrap_or(0),
        )
    }
}

/// `shc:/` + the numeric form of `jws` (one chunk: chunking is deprecated). Errors:
/// [`ShlError::ShcNumeric`] when `jws` has a character outside base64url and `.`.
pub fn encode_qr(jws: &str) -> Result<String> {
    if jws.len() > MAX_SHC_TEXT_LEN / 2 {
        return Err(ShlError::TooLarge {
            what: "JWS for a QR code",
            max: MAX_SHC_TEXT_LEN / 2,
        });
    }
    let mut out = String::with_capacity(SHC_PREFIX.len() + jws.len() * 2);
    out.push_str(SHC_PREFIX);
    for c in jws.bytes() {
        if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.') {
            return Err(ShlError::ShcNumeric {
                reason: "a character that cannot be in a JWS",
            });
        }
        let v = c - 45;
        out.push(char::from(b'0' + v / 10));
        out.push(char::from(b'0' + v % 10));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// .smart-health-card files
// ---------------------------------------------------------------------------------------------

/// The JWS strings of a `.smart-health-card` file (SHC "via File Download":
/// `{"verifiableCredential": ["<<Verifiable Credential as JWS>>", …]}`), at most
/// [`MAX_CARDS_PER_FILE`] of them, the file at most
/// [`MAX_PLAINTEXT_LEN`](crate::limits::MAX_PLAINTEXT_LEN) bytes. Each is only checked to be a string here.
pub fn parse_card_file(json: &[u8]) -> Result<Vec<String>> {
    const WHAT: &str = "SMART Health Card file";
    let max = crate::limits::MAX_PLAINTEXT_LEN;
    if json.len() > max {
        return Err(ShlError::TooLarge { what: WHAT, max });
    }
    let map = parse_object(json, MAX_HEADER_JSON_DEPTH, WHAT)?;
    let err = |reason| ShlError::InvalidField {
        what: WHAT,
        field: "verifiableCredential",
        reason,
    };
    let Some(list) = map.get("verifiableCredential") else {
        return Err(err("is missing"));
    };
    let Value::Array(list) = list else {
        return Err(err("must be an array"));
    };
    if list.len() > MAX_CARDS_PER_FILE {
        return Err(ShlError::TooLarge {
            what: "SMART Health Card file cards",
            max: MAX_CARDS_PER_FILE,
        });
    }
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or(err("must hold JWS strings"))
        })
        .collect()
}

/// A `.smart-health-card` file holding `jws`.
pub fn card_file(jws: &[&str]) -> Vec<u8> {
    serde_json::json!({ "verifiableCredential": jws })
        .to_string()
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The JWS
// ---------------------------------------------------------------------------------------------

/// Whether and by whom a card is vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The signature verifies under a key the [`TrustStore`] holds for the card's `iss`.
    Verified {
        /// The issuer (the card's `iss`).
        issuer: String,
    },
    /// No trusted key of the card's `iss` has its `kid` (unknown issuer, unknown key, or no
    /// `kid`): the content is readable but nobody known vouches for it. Show it as "issuer not
    /// verified".
    IssuerNotVerified,
}

/// A parsed card whose signature has not been checked yet ([`parse_jws`]).
#[derive(Clone)]
pub struct UnverifiedCard {
    signing_input: String,
    signature: [u8; 64],
    kid: Option<String>,
    claims: Claims,
}

impl core::fmt::Debug for UnverifiedCard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UnverifiedCard")
            .field("kid", &self.kid)
            .field("iss", &self.claims.iss)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Claims {
    iss: String,
    nbf: Option<u64>,
    exp: Option<u64>,
    types: Vec<String>,
    fhir_version: Option<String>,
    fhir_bundle: Value,
}

/// A read SMART Health Card. `Debug` leaves out the FHIR content.
#[derive(Clone, PartialEq)]
pub struct HealthCard {
    /// The `iss` claim: the issuer the card names. Trust it only with
    /// [`Verification::Verified`].
    pub iss: String,
    /// `nbf`: when it was issued, seconds since the epoch.
    pub nbf: Option<u64>,
    /// `exp`, when the card has one.
    pub exp: Option<u64>,
    /// `vc.type`.
    pub types: Vec<String>,
    /// `vc.credentialSubject.fhirVersion`.
    pub fhir_version: Option<String>,
    /// `vc.credentialSubject.fhirBundle`: a FHIR Bundle.
    pub fhir_bundle: Value,
    /// The JWS header's `kid`.
    pub kid: Option<String>,
    /// Whether a trusted issuer key verified it.
    pub verification: Verification,
}

impl core::fmt::Debug for HealthCard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HealthCard")
            .field("iss", &self.iss)
            .field("nbf", &self.nbf)
            .field("exp", &self.exp)
            .field("types", &self.types)
            .field("kid", &self.kid)
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

const JWS: &str = "JWS";
const JWS_HEADER: &str = "JWS header";

/// Parses a compact JWS (RFC 7515 §7.1) as a SMART Health Card, without checking the signature:
/// header `alg: ES256` (required), `zip: DEF` (inflated, bounded by [`MAX_CARD_PAYLOAD_LEN`];
/// a payload without `zip` is read as plain JSON), no `crit`; a 64-byte signature; the payload
/// claims `iss`, `nbf`, `exp`, `vc.type` with [`HEALTH_CARD_TYPE`], and
/// `vc.credentialSubject.fhirBundle` a Bundle.
pub fn parse_jws(jws: &str) -> Result<UnverifiedCard> {
    let jws = jws.trim_ascii();
    if jws.len() > MAX_JWS_LEN {
        return Err(ShlError::TooLarge {
            what: JWS,
            max: MAX_JWS_LEN,
        });
    }
    let mut it = jws.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(ShlError::Malformed {
            what: JWS,
            reason: "a compact JWS has three dot-separated parts",
        });
    };
    if h.len() > MAX_HEADER_LEN {
        return Err(ShlError::TooLarge {
            what: JWS_HEADER,
            max: MAX_HEADER_LEN,
        });
    }
    let header = parse_object(
        &b64_decode(h, JWS_HEADER)?,
        MAX_HEADER_JSON_DEPTH,
        JWS_HEADER,
    )?;
    let hf = Fields::new(&header, JWS_HEADER);
    let alg = hf.opt_str("alg")?;
    if alg != Some("ES256") {
        return Err(ShlError::UnsupportedAlgorithm {
            what: "JWS alg",
            alg: alg.map_or_else(|| "(missing)".into(), echo),
        });
    }
    if header.contains_key("crit") {
        return Err(ShlError::CriticalHeader { what: JWS });
    }
    let zip = match hf.opt_str("zip")? {
        None => false,
        Some("DEF") => true,
        Some(z) => return Err(ShlError::UnsupportedCompression { zip: echo(z) }),
    };
    let kid = hf.opt_str_max("kid", 256)?.map(str::to_owned);
    let sig = b64_decode(s, "JWS signature")?;
    let signature: [u8; 64] = sig.as_slice().try_into().map_err(|_| ShlError::Malformed {
        what: JWS,
        reason: "an ES256 signature is 64 bytes",
    })?;
    let raw = b64_decode(p, "JWS payload")?;
    let payload = if zip {
        inflate_raw(&raw, MAX_CARD_PAYLOAD_LEN)?
    } else {
        raw
    };
    let claims = parse_claims(&payload)?;
    Ok(UnverifiedCard {
        signing_input: format!("{h}.{p}"),
        signature,
        kid,
        claims,
    })
}

fn parse_claims(payload: &[u8]) -> Result<Claims> {
    const WHAT: &str = "card payload";
    let not = |reason| ShlError::NotHealthCard { reason };
    let map = parse_object(payload, MAX_CONTENT_JSON_DEPTH, WHAT)?;
    let f = Fields::new(&map, WHAT);
    let iss = f.opt_str_max("iss", 2048)?.ok_or(not("no iss"))?.to_owned();
    let nbf = f.opt_epoch("nbf")?;
    let exp = f.opt_epoch("exp")?;
    let vc = map
        .get("vc")
        .and_then(Value::as_object)
        .ok_or(not("no vc"))?;
    let types: Vec<String> = vc
        .get("type")
        .and_then(Value::as_array)
        .ok_or(not("no vc.type"))?
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if !types.iter().any(|t| t == HEALTH_CARD_TYPE) {
        return Err(not("vc.type has no https://smarthealth.cards#health-card"));
    }
    let subject = vc
        .get("credentialSubject")
        .and_then(Value::as_object)
        .ok_or(not("no vc.credentialSubject"))?;
    let fhir_version = match subject.get("fhirVersion") {
        Some(Value::String(v)) if v.len() <= 64 => Some(v.clone()),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(not(
                "vc.credentialSubject.fhirVersion is not a short string",
            ));
        }
    };
    let fhir_bundle = subject
        .get("fhirBundle")
        .filter(|b| b.get("resourceType").and_then(Value::as_str) == Some("Bundle"))
        .ok_or(not("vc.credentialSubject.fhirBundle is not a FHIR Bundle"))?
        .clone();
    Ok(Claims {
        iss,
        nbf,
        exp,
        types,
        fhir_version,
        fhir_bundle,
    })
}

impl UnverifiedCard {
    /// The `iss` claim (not yet vouched for).
    pub fn iss(&self) -> &str {
        &self.claims.iss
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Verifies the card against `trust` at `now` (seconds since the epoch):
    /// - the key `kid` of issuer `iss` in `trust` → the signature must verify
    ///   ([`ShlError::BadSignature`] otherwise) → [`Verification::Verified`];
    /// - no such key → [`Verification::IssuerNotVerified`];
    /// - then `exp`, when present, must be after `now` ([`ShlError::CardExpired`]; SHC
    ///   "Expiration of Health Cards": "Verifiers SHALL check the expiration, if present").
    pub fn verify(self, trust: &TrustStore, now: u64) -> Result<HealthCard> {
        let key = self
            .kid
            .as_deref()
            .and_then(|kid| trust.key(&self.claims.iss, kid));
        let verification = match key {
            Some(k) => {
                k.verify_es256(self.signing_input.as_bytes(), &self.signature)?;
                Verification::Verified {
                    issuer: self.claims.iss.clone(),
                }
            }
            None => Verification::IssuerNotVerified,
        };
        if let Some(exp) = self.claims.exp
            && now >= exp
        {
            return Err(ShlError::CardExpired { exp, now });
        }
        let c = self.claims;
        Ok(HealthCard {
            iss: c.iss,
            nbf: c.nbf,
            exp: c.exp,
            types: c.types,
            fhir_version: c.fhir_version,
            fhir_bundle: c.fhir_bundle,
            kid: self.kid,
            verification,
        })
    }
}

/// [`parse_jws`], then [`UnverifiedCard::verify`].
pub fn read_card(jws: &str, trust: &TrustStore, now: u64) -> Result<HealthCard> {
    parse_jws(jws)?.verify(trust, now)
}

/// Reads a scanned card: [`assemble_qr`] over the `shc:/` texts, then [`read_card`].
pub fn read_qr<S: AsRef<str>>(texts: &[S], trust: &TrustStore, now: u64) -> Result<HealthCard> {
    read_card(&assemble_qr(texts)?, trust, now)
}

/// Signs a card payload (publish side, tests): `payload` is the claims object (minified here),
/// compressed with raw DEFLATE, header `{"zip":"DEF","alg":"ES256","kid":<thumbprint>}`
/// (SHC "Health Cards are Compact").
pub fn sign_card(payload: &Value, key: &IssuerKey) -> Result<String> {
    let mut header = Map::new();
    header.insert("zip".into(), "DEF".into());
    header.insert("alg".into(), "ES256".into());
    header.insert("kid".into(), key.public_jwk().kid().into());
    let h = b64_encode(Value::Object(header).to_string().as_bytes());
    let json = payload.to_string();
    if json.len() > MAX_CARD_PAYLOAD_LEN {
        return Err(ShlError::TooLarge {
            what: "card payload",
            max: MAX_CARD_PAYLOAD_LEN,
        });
    }
    let p = b64_encode(&deflate_raw(json.as_bytes()));
    let input = format!("{h}.{p}");
    let sig = key.sign_es256(input.as_bytes());
    Ok(format!("{input}.{}", b64_encode(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(iss: &str, exp: Option<u64>) -> Value {
        let mut v = serde_json::json!({
            "iss": iss,
            "nbf": 1_700_000_000u64,
            "vc": {
                "type": [HEALTH_CARD_TYPE, "https://smarthealth.cards#immunization"],
                "credentialSubject": {
                    "fhirVersion": "4.0.1",
                    "fhirBundle": {"resourceType": "Bundle", "type": "collection", "entry": [
                        {"fullUrl": "resource:0", "resource": {"resourceType": "Patient", "name": [{"family": "Anyperson"}]}}
                    ]}
                }
            }
        });
        if let Some(e) = exp {
            v["exp"] = e.into();
        }
        v
    }

    const ISS: &str = "https://issuer.example.org";

    fn store(key: &IssuerKey) -> TrustStore {
        let mut t = TrustStore::new();
        t.add(ISS, Jwks::from_keys([key.public_jwk().clone()]));
        t
    }

    #[test]
    fn numeric_round_trip() {
        let jws = "eyJ6aXAiOiJERUYi.abc-_XYZ09.sig";
        let qr = encode_qr(jws).unwrap();
        assert!(qr.starts_with("shc:/") && qr[5..].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(decode_qr(&qr).unwrap().jws_part, jws);
        // SHC "Encoding QRs": 'X' is 43, '-' is 00, 'z' is 77.
        assert_eq!(encode_qr("X-z").unwrap(), "shc:/430077");
        assert_eq!(decode_qr("SHC:/430077").unwrap().jws_part, "X-z");
    }

    #[test]
    fn numeric_refusals() {
        let n = |r| ShlError::ShcNumeric { reason: r };
        assert_eq!(
            decode_qr("shc:/123").unwrap_err(),
            n("an odd number of digits")
        );
        assert_eq!(
            decode_qr("shc:/78").unwrap_err(),
            n("a digit pair above 77")
        );
        assert_eq!(
            decode_qr("shc:/1a").unwrap_err(),
            n("a character that is not a digit")
        );
        assert_eq!(
            decode_qr("shc:/02").unwrap_err(),
            n("a character that cannot be in a JWS")
        ); // '/'
        assert_eq!(decode_qr("shc:/").unwrap_err(), n("no digits"));
        assert_eq!(
            decode_qr("shlink:/00").unwrap_err(),
            n("it does not start with shc:/")
        );
        assert!(matches!(
            decode_qr("shc:/0/2/00"),
            Err(ShlError::ShcChunks { .. })
        ));
        assert!(matches!(
            decode_qr("shc:/3/2/00"),
            Err(ShlError::ShcChunks { .. })
        ));
        assert!(matches!(
            decode_qr("shc:/1/17/00"),
            Err(ShlError::ShcChunks { .. })
        ));
        assert!(matches!(
            decode_qr("shc:/01/2/00"),
            Err(ShlError::ShcChunks { .. })
        ));
        assert!(matches!(
            decode_qr("shc:/1/00"),
            Err(ShlError::ShcChunks { .. })
        ));
    }

    #[test]
    fn chunks_in_any_order() {
        let key = IssuerKey::generate();
        let jws = sign_card(&payload(ISS, None), &key).unwrap();
        let digits = &encode_qr(&jws).unwrap()[5..];
        // Split at even positions into three chunks.
        let third = (digits.len() / 6) * 2;
        let parts = [
            &digits[..third],
            &digits[third..2 * third],
            &digits[2 * third..],
        ];
        let texts: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("shc:/{}/3/{p}", i + 1))
            .collect();
        let shuffled = [&texts[2], &texts[0], &texts[1]];
        assert_eq!(assemble_qr(&shuffled).unwrap(), jws);
        let mut set = ChunkSet::default();
        assert_eq!(set.add(&texts[1]).unwrap(), None);
        assert_eq!(set.add(&texts[1]).unwrap(), None); // scanned twice: fine
        assert_eq!(set.progress(), (1, 3));
        assert!(matches!(
            set.add("shc:/1/2/00"),
            Err(ShlError::ShcChunks { .. })
        ));
        assert!(matches!(
            assemble_qr(&texts[..2]),
            Err(ShlError::ShcChunks {
                reason: "chunks are missing"
            })
        ));
        let card = read_qr(&shuffled, &store(&key), 0).unwrap();
        assert!(matches!(card.verification, Verification::Verified { .. }));
    }

    #[test]
    fn verify_tamper_unknown_expired() {
        let key = IssuerKey::generate();
        let trust = store(&key);
        let jws = sign_card(&payload(ISS, None), &key).unwrap();
        let card = read_card(&jws, &trust, 1).unwrap();
        assert_eq!(
            card.verification,
            Verification::Verified { issuer: ISS.into() }
        );
        assert_eq!(
            card.fhir_bundle["entry"][0]["resource"]["resourceType"],
            "Patient"
        );
        assert_eq!(card.fhir_version.as_deref(), Some("4.0.1"));
        assert_eq!(card.kid.as_deref(), Some(key.public_jwk().kid()));

        // Tampered payload: another bundle under the same header and signature.
        let parts: Vec<&str> = jws.split('.').collect();
        let mut other = payload(ISS, None);
        other["vc"]["credentialSubject"]["fhirBundle"]["entry"][0]["resource"]["name"][0]["family"] =
            "Someoneelse".into();
        let p = b64_encode(&deflate_raw(other.to_string().as_bytes()));
        let tampered = format!("{}.{p}.{}", parts[0], parts[2]);
        assert_eq!(
            read_card(&tampered, &trust, 1).unwrap_err(),
            ShlError::BadSignature
        );
        // A flipped signature bit.
        let mut sig = b64_decode(parts[2], "t").unwrap();
        sig[10] ^= 0x40;
        let bad_sig = format!("{}.{}.{}", parts[0], parts[1], b64_encode(&sig));
        assert_eq!(
            read_card(&bad_sig, &trust, 1).unwrap_err(),
            ShlError::BadSignature
        );

        // Unknown key, unknown issuer, an issuer's key used for another issuer's card.
        assert_eq!(
            read_card(&jws, &TrustStore::new(), 1).unwrap().verification,
            Verification::IssuerNotVerified
        );
        let stranger = IssuerKey::generate();
        let theirs = sign_card(&payload(ISS, None), &stranger).unwrap();
        assert_eq!(
            read_card(&theirs, &trust, 1).unwrap().verification,
            Verification::IssuerNotVerified
        );
        let mut t2 = store(&key);
        t2.add(
            "https://stranger.example.org",
            Jwks::from_keys([stranger.public_jwk().clone()]),
        );
        assert_eq!(
            read_card(&theirs, &t2, 1).unwrap().verification,
            Verification::IssuerNotVerified
        );

        // Expired.
        let exp = sign_card(&payload(ISS, Some(100)), &key).unwrap();
        assert!(read_card(&exp, &trust, 99).is_ok());
        assert_eq!(
            read_card(&exp, &trust, 100).unwrap_err(),
            ShlError::CardExpired { exp: 100, now: 100 }
        );
    }

    #[test]
    fn jws_refusals() {
        let key = IssuerKey::generate();
        let good = sign_card(&payload(ISS, None), &key).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let with_header =
            |h: &str| format!("{}.{}.{}", b64_encode(h.as_bytes()), parts[1], parts[2]);
        assert_eq!(
            parse_jws(&with_header(r#"{"alg":"RS256","zip":"DEF"}"#)).unwrap_err(),
            ShlError::UnsupportedAlgorithm {
                what: "JWS alg",
                alg: "RS256".into()
            }
        );
        assert_eq!(
            parse_jws(&with_header(r#"{"alg":"ES256","zip":"BR"}"#)).unwrap_err(),
            ShlError::UnsupportedCompression { zip: "BR".into() }
        );
        assert_eq!(
            parse_jws(&with_header(r#"{"alg":"ES256","zip":"DEF","crit":["x"]}"#)).unwrap_err(),
            ShlError::CriticalHeader { what: JWS }
        );
        assert!(matches!(parse_jws("a.b"), Err(ShlError::Malformed { .. })));
        assert!(matches!(
            parse_jws(&format!("{}.{}.AAAA", parts[0], parts[1])),
            Err(ShlError::Malformed {
                reason: "an ES256 signature is 64 bytes",
                ..
            })
        ));
        let not_card = |v: Value| {
            let p = b64_encode(&deflate_raw(v.to_string().as_bytes()));
            parse_jws(&format!("{}.{p}.{}", parts[0], parts[2])).unwrap_err()
        };
        assert!(matches!(
            not_card(serde_json::json!({"vc": {}})),
            ShlError::NotHealthCard { reason: "no iss" }
        ));
        let mut wrong_type = payload(ISS, None);
        wrong_type["vc"]["type"] = serde_json::json!(["VerifiableCredential"]);
        assert!(matches!(
            not_card(wrong_type),
            ShlError::NotHealthCard { .. }
        ));
        let mut no_bundle = payload(ISS, None);
        no_bundle["vc"]["credentialSubject"]["fhirBundle"] =
            serde_json::json!({"resourceType": "Patient"});
        assert!(matches!(
            not_card(no_bundle),
            ShlError::NotHealthCard { .. }
        ));
    }

    #[test]
    fn card_files() {
        let key = IssuerKey::generate();
        let a = sign_card(&payload(ISS, None), &key).unwrap();
        let file = card_file(&[&a, &a]);
        assert_eq!(parse_card_file(&file).unwrap(), vec![a.clone(), a]);
        assert!(matches!(
            parse_card_file(b"{}"),
            Err(ShlError::InvalidField {
                reason: "is missing",
                ..
            })
        ));
        assert!(matches!(
            parse_card_file(br#"{"verifiableCredential":[1]}"#),
            Err(ShlError::InvalidField { .. })
        ));
    }
}
