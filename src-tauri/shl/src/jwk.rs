//! Issuer keys: ES256 JWKs, JWK sets, and the trust store cards are verified against.
//!
//! SHC "Determining keys associated with an issuer": each key "SHALL have `"kty": "EC"`,
//! `"use": "sig"`, and `"alg": "ES256"`", "SHALL have `"kid"` equal to the base64url-encoded
//! SHA-256 JWK Thumbprint of the key (see RFC7638)", "SHALL have `"crv": "P-256"`, and `"x"`,
//! `"y"`", and "SHALL NOT have the Elliptic Curve private key parameter `"d"`". Issuers publish
//! them as a JWK Set at `iss + "/.well-known/jwks.json"`.

use p256::EncodedPoint;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand_core::OsRng;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::encoding::{b64_decode, b64_encode, parse_object};
use crate::error::{Result, ShlError};
use crate::limits::{MAX_HEADER_JSON_DEPTH, MAX_JWKS_KEYS, MAX_JWKS_LEN};

/// An issuer's ES256 public key, checked as SHC requires.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    kid: String,
    x: [u8; 32],
    y: [u8; 32],
    key: VerifyingKey,
}

impl core::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// Parses one JWK (a JSON object) and checks it is an ES256 public signing key:
    /// `kty` `EC`, `crv` `P-256`, `use` `sig` and `alg` `ES256` when present, no `d`, `x` and
    /// `y` 32 bytes each and a point on the curve, `kid` its RFC 7638 thumbprint.
    /// `x5c` and other members are ignored. Errors: [`ShlError::InvalidJwk`].
    pub fn from_json(map: &Map<String, Value>) -> Result<Self> {
        let bad = |reason| ShlError::InvalidJwk { reason };
        let s = |name: &str| match map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad("a member is not a string")),
        };
        if s("kty")? != Some("EC") {
            return Err(bad("kty is not EC"));
        }
        if s("crv")? != Some("P-256") {
            return Err(bad("crv is not P-256"));
        }
        if map.contains_key("d") {
            return Err(bad("it holds a private key (d)"));
        }
        if s("use")?.is_some_and(|u| u != "sig") {
            return Err(bad("use is not sig"));
        }
        if s("alg")?.is_some_and(|a| a != "ES256") {
            return Err(bad("alg is not ES256"));
        }
        let coord = |name| -> Result<[u8; 32]> {
            let v = s(name)?.ok_or(bad("x or y is missing"))?;
            let b = b64_decode(v, "JWK coordinate").map_err(|_| bad("x or y is not base64url"))?;
            b.as_slice()
                .try_into()
                .map_err(|_| bad("x or y is not 32 bytes"))
        };
        let (x, y) = (coord("x")?, coord("y")?);
        let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        let key = VerifyingKey::from_encoded_point(&point)
            .map_err(|_| bad("the point is not on P-256"))?;
        let kid = s("kid")?.ok_or(bad("kid is missing"))?;
        let jwk = Self {
            kid: kid.to_owned(),
            x,
            y,
            key,
        };
        if jwk.thumbprint() != kid {
            return Err(bad("kid is not the key's RFC 7638 thumbprint"));
        }
        Ok(jwk)
    }

    /// Parses one JWK from JSON text (at most [`MAX_JWKS_LEN`] bytes).
    pub fn parse(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_JWKS_LEN {
            return Err(ShlError::TooLarge {
                what: "JWK",
                max: MAX_JWKS_LEN,
            });
        }
        Self::from_json(&parse_object(json, MAX_HEADER_JSON_DEPTH, "JWK")?)
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its RFC 7638 thumbprint: SHA-256 over `{"crv":"P-256","kty":"EC","x":…,"y":…}`
    /// (members in that order, no whitespace), base64url.
    pub fn thumbprint(&self) -> String {
        let json = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64_encode(&self.x),
            b64_encode(&self.y)
        );
        b64_encode(&Sha256::digest(json.as_bytes()))
    }

    /// The public JWK as SHC publishes it (`kty`, `kid`, `use`, `alg`, `crv`, `x`, `y`).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "kty": "EC",
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
            "crv": "P-256",
            "x": b64_encode(&self.x),
            "y": b64_encode(&self.y),
        })
    }

    /// Verifies an ES256 signature (RFC 7518 §3.4: the 64-byte `R || S`, SHA-256 over
    /// `message`). Errors: [`ShlError::BadSignature`].
    pub fn verify_es256(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        let sig = Signature::from_slice(signature).map_err(|_| ShlError::BadSignature)?;
        self.key
            .verify(message, &sig)
            .map_err(|_| ShlError::BadSignature)
    }

    fn from_verifying_key(key: VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        // An uncompressed point of a valid key has both coordinates.
        if let (Some(px), Some(py)) = (point.x(), point.y()) {
            x.copy_from_slice(px);
            y.copy_from_slice(py);
        }
        let mut jwk = Self {
            kid: String::new(),
            x,
            y,
            key,
        };
        jwk.kid = jwk.thumbprint();
        jwk
    }
}

/// A key that was in a JWK set and is not used, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedKey {
    /// Its `kid`, when it had a string one.
    pub kid: Option<String>,
    /// Why it is not used ([`ShlError::InvalidJwk`]).
    pub error: ShlError,
}

/// An issuer's JWK set: its usable ES256 keys, and the entries that are not (other key types,
/// encryption keys, malformed keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Jwk>,
    rejected: Vec<RejectedKey>,
}

impl Jwks {
    /// Parses `{"keys": [...]}` (at most [`MAX_JWKS_LEN`] bytes, [`MAX_JWKS_KEYS`] keys).
    /// Entries that are not ES256 signing keys are kept aside in [`Jwks::rejected`], not
    /// failed: SHC "Signing keys in the `.keys[]` array can be identified by `kid` following
    /// the requirements above (i.e., by filtering on `kty`, `use`, and `alg`)".
    pub fn parse(json: &[u8]) -> Result<Self> {
        const WHAT: &str = "JWK set";
        if json.len() > MAX_JWKS_LEN {
            return Err(ShlError::TooLarge {
                what: WHAT,
                max: MAX_JWKS_LEN,
            });
        }
        let map = parse_object(json, MAX_HEADER_JSON_DEPTH, WHAT)?;
        let Some(Value::Array(entries)) = map.get("keys") else {
            return Err(ShlError::InvalidField {
                what: WHAT,
                field: "keys",
                reason: "must be an array",
            });
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(ShlError::TooLarge {
                what: "JWK set keys",
                max: MAX_JWKS_KEYS,
            });
        }
        let mut out = Self::default();
        for e in entries {
            let kid = e.get("kid").and_then(Value::as_str).map(str::to_owned);
            let parsed = match e {
                Value::Object(m) => Jwk::from_json(m),
                _ => Err(ShlError::InvalidJwk {
                    reason: "not a JSON object",
                }),
            };
            match parsed {
                Ok(k) if out.get(k.kid()).is_none() => out.keys.push(k),
                Ok(k) => out.rejected.push(RejectedKey {
                    kid: Some(k.kid),
                    error: ShlError::InvalidJwk {
                        reason: "kid listed twice",
                    },
                }),
                Err(error) => out.rejected.push(RejectedKey { kid, error }),
            }
        }
        Ok(out)
    }

    /// A set of the given keys.
    pub fn from_keys(keys: impl IntoIterator<Item = Jwk>) -> Self {
        let mut out = Self::default();
        for k in keys {
            if out.get(k.kid()).is_none() {
                out.keys.push(k);
            }
        }
        out
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The entries that are not used, and why.
    pub fn rejected(&self) -> &[RejectedKey] {
        &self.rejected
    }

    /// `{"keys": [...]}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "keys": self.keys.iter().map(Jwk::to_json).collect::<Vec<_>>() })
    }
}

/// The issuers a verifier trusts, each with its JWK set. A card verifies only under a key of
/// the issuer its own `iss` names (exact string match), so one issuer's key cannot vouch for
/// another issuer's card.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    issuers: Vec<(String, Jwks)>,
}

impl TrustStore {
    /// An empty store: every card reads as [`crate::shc::Verification::IssuerNotVerified`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `iss` (as cards write it: `https://…`, no trailing `/`) with its keys; adding the
    /// same issuer again adds keys to it.
    pub fn add(&mut self, iss: &str, jwks: Jwks) -> &mut Self {
        match self.issuers.iter_mut().find(|(i, _)| i == iss) {
            Some((_, existing)) => {
                for k in jwks.keys {
                    if existing.get(k.kid()).is_none() {
                        existing.keys.push(k);
                    }
                }
            }
            None => self.issuers.push((iss.to_owned(), jwks)),
        }
        self
    }

    /// The key `kid` of issuer `iss`, if trusted.
    pub fn key(&self, iss: &str, kid: &str) -> Option<&Jwk> {
        self.issuers
            .iter()
            .find(|(i, _)| i == iss)
            .and_then(|(_, jwks)| jwks.get(kid))
    }
}

/// An issuer's ES256 signing key (publish side, tests). `Debug` shows the public `kid` only.
#[derive(Clone)]
pub struct IssuerKey {
    signing: SigningKey,
    public: Jwk,
}

impl core::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl IssuerKey {
    /// A fresh random P-256 key.
    pub fn generate() -> Self {
        let signing = SigningKey::random(&mut OsRng);
        let public = Jwk::from_verifying_key(*signing.verifying_key());
        Self { signing, public }
    }

    /// The public JWK (`kid` = its thumbprint).
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// ES256 over `message`: the 64-byte `R || S` (RFC 7518 §3.4).
    pub fn sign_es256(&self, message: &[u8]) -> [u8; 64] {
        let sig: Signature = self.signing.sign(message);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHC "Determining keys associated with an issuer": the example key's kid is its
    // thumbprint.
    const SPEC_JWK: &str = r#"{"kty":"EC","kid":"_IY9W2kRRFUigDfSB9r8jHgMRrT0w4p5KN93nGThdH8","use":"sig","alg":"ES256","crv":"P-256","x":"7xbC_9ZmFwKqOHpwX6-LnlhIh5SMIuNwl0PW1yVI_sk","y":"7k2fdIRNDHdf93vL76wxdXEPtj_GiMTTyecm7EUUMQo"}"#;

    #[test]
    fn spec_example_key() {
        let k = Jwk::parse(SPEC_JWK.as_bytes()).unwrap();
        assert_eq!(k.kid(), "_IY9W2kRRFUigDfSB9r8jHgMRrT0w4p5KN93nGThdH8");
        assert_eq!(Jwk::from_json(k.to_json().as_object().unwrap()).unwrap(), k);
    }

    #[test]
    fn key_refusals() {
        let base: Map<String, Value> = serde_json::from_str(SPEC_JWK).unwrap();
        let with = |k: &str, v: Value| {
            let mut m = base.clone();
            if v.is_null() {
                m.remove(k);
            } else {
                m.insert(k.into(), v);
            }
            Jwk::from_json(&m).unwrap_err()
        };
        let r = |reason| ShlError::InvalidJwk { reason };
        assert_eq!(with("kty", "RSA".into()), r("kty is not EC"));
        assert_eq!(with("crv", "P-384".into()), r("crv is not P-256"));
        assert_eq!(with("d", "AAAA".into()), r("it holds a private key (d)"));
        assert_eq!(with("use", "enc".into()), r("use is not sig"));
        assert_eq!(with("alg", "ES384".into()), r("alg is not ES256"));
        assert_eq!(with("kid", Value::Null), r("kid is missing"));
        assert_eq!(
            with("kid", "other".into()),
            r("kid is not the key's RFC 7638 thumbprint")
        );
        assert_eq!(with("x", "AAAA".into()), r("x or y is not 32 bytes"));
        // x changed by one bit: no longer on the curve (or at least no longer this key).
        assert!(matches!(
            with("x", "7xbC_9ZmFwKqOHpwX6-LnlhIh5SMIuNwl0PW1yVI_sg".into()),
            ShlError::InvalidJwk { .. }
        ));
        // use / alg may be absent.
        let mut m = base.clone();
        m.remove("use");
        m.remove("alg");
        assert!(Jwk::from_json(&m).is_ok());
    }

    #[test]
    fn jwks_filters_and_store_scopes_by_issuer() {
        let a = IssuerKey::generate();
        let set = serde_json::json!({"keys": [
            a.public_jwk().to_json(),
            {"kty": "RSA", "kid": "rsa1", "n": "AQAB", "e": "AQAB"},
            a.public_jwk().to_json(),
            7
        ]});
        let jwks = Jwks::parse(set.to_string().as_bytes()).unwrap();
        assert_eq!(jwks.keys().len(), 1);
        assert_eq!(jwks.rejected().len(), 3);
        assert_eq!(jwks.rejected()[0].kid.as_deref(), Some("rsa1"));
        let mut store = TrustStore::new();
        store.add("https://issuer.example.org", jwks);
        let kid = a.public_jwk().kid();
        assert!(store.key("https://issuer.example.org", kid).is_some());
        assert!(store.key("https://other.example.org", kid).is_none());
        assert!(Jwks::parse(br#"{"keys":{}}"#).is_err());
    }

    #[test]
    fn sign_verify() {
        let k = IssuerKey::generate();
        let sig = k.sign_es256(b"message");
        k.public_jwk().verify_es256(b"message", &sig).unwrap();
        assert_eq!(
            k.public_jwk().verify_es256(b"messagf", &sig),
            Err(ShlError::BadSignature)
        );
        assert_eq!(
            k.public_jwk().verify_es256(b"message", &sig[..63]),
            Err(ShlError::BadSignature)
        );
        assert!(!format!("{k:?}").contains("signing"));
    }
}
