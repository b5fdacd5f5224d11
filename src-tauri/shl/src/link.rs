//! `shlink:/…`: the SMART Health Link payload.
//!
//! SHL "Construct a SMART Health Link Payload": a minified JSON object `{url, key, exp?, flag?,
//! label?, v?}`, base64url-encoded, prefixed with `shlink:/`, optionally prefixed with a viewer
//! URL that ends with `#`.

use rand_core::{OsRng, RngCore};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::encoding::{Fields, b64_decode, b64_encode, is_b64url, parse_object, strip_prefix_ci};
use crate::endpoint::check_url;
use crate::error::{Result, ShlError};
use crate::limits::{
    MAX_FLAG_LEN, MAX_LABEL_CHARS, MAX_LINK_JSON_DEPTH, MAX_LINK_PAYLOAD_LEN, MAX_LINK_TEXT_LEN,
    MAX_LINK_URL_LEN,
};

/// The `shlink:/` scheme prefix.
pub const SHLINK_PREFIX: &str = "shlink:/";

/// The protocol version this crate implements (SHL "Construct a SMART Health Link Payload":
/// `v` defaults to 1).
pub const SUPPORTED_VERSION: u64 = 1;

const WHAT: &str = "link payload";

// ---------------------------------------------------------------------------------------------
// The key
// ---------------------------------------------------------------------------------------------

/// A link's 256-bit file key (SHL "Construct a SMART Health Link Payload": `key`, "43
/// characters, consisting of 32 random bytes base64urlencoded"). Every file of the link is a
/// JWE under this key (`alg: dir`).
///
/// Zeroed on drop; `Debug` shows only its thumbprint's first characters.
#[derive(Clone)]
pub struct ShlKey(Zeroizing<[u8; 32]>);

impl ShlKey {
    /// A fresh random key (publish side, tests).
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key from the payload's 43 base64url characters; anything else is
    /// [`ShlError::InvalidKey`].
    pub fn from_base64url(s: &str) -> Result<Self> {
        if s.len() != 43 || !is_b64url(s) {
            return Err(ShlError::InvalidKey);
        }
        let bytes = Zeroizing::new(b64_decode(s, "key").map_err(|_| ShlError::InvalidKey)?);
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ShlError::InvalidKey)?;
        Ok(Self::from_bytes(arr))
    }

    /// The 43 base64url characters.
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(b64_encode(self.0.as_ref()))
    }

    /// The RFC 7638 JWK thumbprint of this key as an `oct` JWK (`{"k":…,"kty":"oct"}`,
    /// SHA-256, base64url). SHL producers put it in the JWE header's `kid`; it tells a file
    /// encrypted for another link ([`ShlError::WrongKey`]) from an altered one. It reveals
    /// nothing of the key.
    pub fn thumbprint(&self) -> String {
        let k = self.to_base64url();
        let mut h = Sha256::new();
        h.update(b"{\"k\":\"");
        h.update(k.as_bytes());
        h.update(b"\",\"kty\":\"oct\"}");
        b64_encode(&h.finalize())
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for ShlKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref().ct_eq(other.0.as_ref()).into()
    }
}
impl Eq for ShlKey {}

impl core::fmt::Debug for ShlKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = self.thumbprint();
        write!(f, "ShlKey(thumbprint {}…)", t.get(..8).unwrap_or(""))
    }
}

// ---------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------

/// The payload's `flag` (SHL "Construct a SMART Health Link Payload"): single characters,
/// concatenated in alphabetical order. Unknown flag letters are ignored, as the specification
/// requires ("SHL Receiver Application SHALL ignore flag values they don't recognize").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// `L`: long-term use; the manifest may change and may be polled.
    pub long_term: bool,
    /// `P`: a passcode is needed for the manifest request.
    pub passcode: bool,
    /// `U`: the `url` is the single encrypted file itself, fetched with `GET` (no manifest).
    pub direct_file: bool,
}

impl Flags {
    /// Parses a `flag` string: ASCII capital letters only, at most [`MAX_FLAG_LEN`]; `P` with
    /// `U` is [`ShlError::PasscodeWithDirectFile`] ("SHALL NOT be used in combination with P").
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason| ShlError::InvalidField {
            what: WHAT,
            field: "flag",
            reason,
        };
        if s.len() > MAX_FLAG_LEN {
            return Err(err("is too long"));
        }
        let mut f = Self::default();
        for b in s.bytes() {
            match b {
                b'L' => f.long_term = true,
                b'P' => f.passcode = true,
                b'U' => f.direct_file = true,
                b'A'..=b'Z' => {} // a future flag: ignored
                _ => return Err(err("must be capital letters")),
            }
        }
        if f.passcode && f.direct_file {
            return Err(ShlError::PasscodeWithDirectFile);
        }
        Ok(f)
    }

    /// The `flag` string: the set flags in alphabetical order (empty when none).
    pub fn as_string(&self) -> String {
        let mut s = String::new();
        if self.long_term {
            s.push('L');
        }
        if self.passcode {
            s.push('P');
        }
        if self.direct_file {
            s.push('U');
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The link
// ---------------------------------------------------------------------------------------------

/// A parsed SMART Health Link.
///
/// `Debug` shows the flags, label, expiry, version and the URL's host only: the URL and the key
/// together are the capability to read the data.
#[derive(Clone, PartialEq, Eq)]
pub struct Shlink {
    url: String,
    key: ShlKey,
    exp: Option<u64>,
    flags: Flags,
    label: Option<String>,
    v: Option<u64>,
}

impl core::fmt::Debug for Shlink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        f.debug_struct("Shlink")
            .field("host", &host)
            .field("flags", &self.flags)
            .field("label", &self.label)
            .field("exp", &self.exp)
            .field("v", &self.v)
            .finish_non_exhaustive()
    }
}

impl Shlink {
    /// A new link (publish side, tests). The same checks as [`Shlink::parse`] apply.
    pub fn new(
        url: &str,
        key: ShlKey,
        flags: Flags,
        label: Option<&str>,
        exp: Option<u64>,
    ) -> Result<Self> {
        check_url(url, MAX_LINK_URL_LEN, "link url")?;
        if flags.passcode && flags.direct_file {
            return Err(ShlError::PasscodeWithDirectFile);
        }
        if let Some(l) = label {
            check_label(l)?;
        }
        Ok(Self {
            url: url.to_owned(),
            key,
            exp,
            flags,
            label: label.map(str::to_owned),
            v: None,
        })
    }

    /// Parses scanned or pasted text: `shlink:/<payload>`, or a viewer URL
    /// `http(s)://…#shlink:/<payload>` (SHL "Construct a SMART Health Link Payload": "Optionally
    /// prefixed with a viewer URL that ends with `#`"). Surrounding whitespace is ignored; the
    /// scheme is matched case-insensitively.
    ///
    /// Checks the format only; [`Shlink::check_usable`] checks expiry and version. The label
    /// of an expired link can still be shown.
    ///
    /// Errors: [`ShlError::TooLarge`] (text over [`MAX_LINK_TEXT_LEN`], payload over
    /// [`MAX_LINK_PAYLOAD_LEN`]), [`ShlError::NotShlink`], [`ShlError::Base64`],
    /// [`ShlError::Json`], [`ShlError::InvalidField`], [`ShlError::InvalidKey`],
    /// [`ShlError::InvalidUrl`], [`ShlError::LabelTooLong`],
    /// [`ShlError::PasscodeWithDirectFile`].
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_LINK_TEXT_LEN {
            return Err(ShlError::TooLarge {
                what: "link text",
                max: MAX_LINK_TEXT_LEN,
            });
        }
        let body = link_body(text.trim()).ok_or(ShlError::NotShlink)?;
        // Padding is not part of base64url as the specification uses it, but some encoders
        // add it; it carries nothing, so it is dropped.
        let body = body.trim_end_matches('=');
        if body.is_empty() {
            return Err(ShlError::NotShlink);
        }
        if body.len() > MAX_LINK_PAYLOAD_LEN.div_ceil(3) * 4 {
            return Err(ShlError::TooLarge {
                what: "link payload",
                max: MAX_LINK_PAYLOAD_LEN,
            });
        }
        let json = b64_decode(body, WHAT)?;
        let map = parse_object(&json, MAX_LINK_JSON_DEPTH, WHAT)?;
        Self::from_map(&map)
    }

    /// [`Shlink::parse`], then [`Shlink::check_usable`] at `now` (seconds since the epoch).
    pub fn parse_usable(text: &str, now: u64) -> Result<Self> {
        let link = Self::parse(text)?;
        link.check_usable(now)?;
        Ok(link)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self> {
        let f = Fields::new(map, WHAT);
        // Unknown members (extensions, `_`-prefixed names) are ignored: "SHL Receiving
        // Application SHALL ignore properties they don't recognize".
        let url = f.req_str("url")?;
        check_url(url, MAX_LINK_URL_LEN, "link url")?;
        let key = ShlKey::from_base64url(f.req_str("key")?)?;
        let exp = f.opt_epoch("exp")?;
        let flags = match f.opt_str("flag")? {
            Some(s) => Flags::parse(s)?,
            None => Flags::default(),
        };
        let label = f.opt_str("label")?;
        if let Some(l) = label {
            check_label(l)?;
        }
        let v = f.opt_pos_int("v")?;
        Ok(Self {
            url: url.to_owned(),
            key,
            exp,
            flags,
            label: label.map(str::to_owned),
            v,
        })
    }

    /// Refuses a link that must not be opened at `now` (seconds since the epoch):
    /// [`ShlError::Expired`] when `exp` is not after `now` (`exp` is "a hint to help the SHL
    /// Receiving Application determine if this QR is stale"; a link at or past it is treated as
    /// stale), [`ShlError::UnsupportedVersion`] when `v` is above 1 (SHL "Design Note: Protocol
    /// Versioning": the receiver "SHOULD NOT proceed with a manifest request").
    pub fn check_usable(&self, now: u64) -> Result<()> {
        if let Some(exp) = self.exp
            && now >= exp
        {
            return Err(ShlError::Expired { exp, now });
        }
        if self.version() > SUPPORTED_VERSION {
            return Err(ShlError::UnsupportedVersion { v: self.version() });
        }
        Ok(())
    }

    /// The manifest URL (or, with [`Flags::direct_file`], the file's URL). A capability: do
    /// not log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The file key.
    pub fn key(&self) -> &ShlKey {
        &self.key
    }

    /// `exp`, seconds since the epoch.
    pub fn exp(&self) -> Option<u64> {
        self.exp
    }

    /// The flags.
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// The label, at most 80 characters, no control characters.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The protocol version: `v`, or 1 when absent.
    pub fn version(&self) -> u64 {
        self.v.unwrap_or(SUPPORTED_VERSION)
    }

    /// The payload as minified JSON (members `url`, `key`, then `exp`, `flag`, `label`, `v`
    /// when present). Holds the key: zeroed on drop.
    pub fn payload_json(&self) -> Zeroizing<String> {
        // Written by hand rather than through a `serde_json::Value`, so that no copy of the key
        // is left unzeroed.
        let quote = |v: &str| serde_json::to_string(v).unwrap_or_default();
        let mut s = Zeroizing::new(String::with_capacity(2048));
        s.push_str("{\"url\":");
        s.push_str(&quote(&self.url));
        s.push_str(",\"key\":\"");
        s.push_str(self.key.to_base64url().as_str()); // base64url: nothing to escape
        s.push('"');
        if let Some(exp) = self.exp {
            s.push_str(&format!(",\"exp\":{exp}"));
        }
        let flag = self.flags.as_string();
        if !flag.is_empty() {
            s.push_str(&format!(",\"flag\":\"{flag}\""));
        }
        if let Some(l) = &self.label {
            s.push_str(",\"label\":");
            s.push_str(&quote(l));
        }
        if let Some(v) = self.v {
            s.push_str(&format!(",\"v\":{v}"));
        }
        s.push('}');
        s
    }

    /// `shlink:/` + the base64url payload (SHL "Construct a SMART Health Link Payload").
    pub fn to_text(&self) -> Zeroizing<String> {
        let json = self.payload_json();
        Zeroizing::new(format!("{SHLINK_PREFIX}{}", b64_encode(json.as_bytes())))
    }

    /// `viewer` + `#` + [`Shlink::to_text`] (`viewer` without its own fragment).
    pub fn to_viewer_url(&self, viewer: &str) -> Zeroizing<String> {
        let base = viewer.split('#').next().unwrap_or(viewer);
        Zeroizing::new(format!("{base}#{}", self.to_text().as_str()))
    }
}

/// The part after `shlink:/`, from a bare link or a viewer URL's fragment.
fn link_body(t: &str) -> Option<&str> {
    if let Some(body) = strip_prefix_ci(t, SHLINK_PREFIX) {
        return Some(body);
    }
    if strip_prefix_ci(t, "https://").is_some() || strip_prefix_ci(t, "http://").is_some() {
        let (_, fragment) = t.split_once('#')?;
        return strip_prefix_ci(fragment, SHLINK_PREFIX);
    }
    None
}

/// SHL "Construct a SMART Health Link Payload": `label`, "String no longer than 80
/// characters". Control characters (newlines, bidi overrides are not control characters but
/// C0/C1 are) are refused: the label is shown to the user as the link's description.
fn check_label(l: &str) -> Result<()> {
    if l.chars().count() > MAX_LABEL_CHARS {
        return Err(ShlError::LabelTooLong);
    }
    if l.chars().any(char::is_control) {
        return Err(ShlError::InvalidField {
            what: WHAT,
            field: "label",
            reason: "contains control characters",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The SHL specification's example payload ("Example SMART Health Link Generation").
    const SPEC_URL: &str =
        "https://ehr.example.org/qr/Y9xwkUdtmN9wwoJoN3ffJIhX2UGvCL1JnlPVNL3kDWM/m";
    const SPEC_KEY: &str = "rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q";

    fn encode(json: &str) -> String {
        format!("shlink:/{}", b64_encode(json.as_bytes()))
    }

    #[test]
    fn parses_all_fields() {
        let t = encode(&format!(
            r#"{{"url":"{SPEC_URL}","flag":"LP","key":"{SPEC_KEY}","label":"Back-to-school","exp":1700000000,"v":1,"_ext":{{"a":1}}}}"#
        ));
        let l = Shlink::parse(&t).unwrap();
        assert_eq!(l.url(), SPEC_URL);
        assert_eq!(l.key().to_base64url().as_str(), SPEC_KEY);
        assert!(l.flags().long_term && l.flags().passcode && !l.flags().direct_file);
        assert_eq!(l.label(), Some("Back-to-school"));
        assert_eq!(l.exp(), Some(1_700_000_000));
        assert_eq!(l.version(), 1);
        assert_eq!(Shlink::parse(&l.to_text()).unwrap(), l);
        // Viewer URL form, any case of the scheme, surrounding whitespace.
        let viewer = format!(" https://viewer.example.org/x#SHLINK:/{}\n", &t[8..]);
        assert_eq!(Shlink::parse(&viewer).unwrap(), l);
        assert_eq!(
            Shlink::parse(&l.to_viewer_url("https://v.example/#old")).unwrap(),
            l
        );
    }

    #[test]
    fn debug_hides_url_and_key() {
        let t = encode(&format!(r#"{{"url":"{SPEC_URL}","key":"{SPEC_KEY}"}}"#));
        let d = format!("{:?}", Shlink::parse(&t).unwrap());
        assert!(d.contains("ehr.example.org"));
        assert!(!d.contains("Y9xwk") && !d.contains(SPEC_KEY), "{d}");
    }

    #[test]
    fn flags() {
        assert_eq!(Flags::parse("").unwrap(), Flags::default());
        let f = Flags::parse("LUX").unwrap(); // X: unknown, ignored
        assert!(f.long_term && f.direct_file && !f.passcode);
        assert_eq!(f.as_string(), "LU");
        assert_eq!(Flags::parse("PU"), Err(ShlError::PasscodeWithDirectFile));
        assert!(matches!(
            Flags::parse("l"),
            Err(ShlError::InvalidField { field: "flag", .. })
        ));
    }

    #[test]
    fn expiry_and_version() {
        let t = encode(&format!(
            r#"{{"url":"{SPEC_URL}","key":"{SPEC_KEY}","exp":1000}}"#
        ));
        let l = Shlink::parse(&t).unwrap();
        assert!(l.check_usable(999).is_ok());
        assert_eq!(
            l.check_usable(1000),
            Err(ShlError::Expired {
                exp: 1000,
                now: 1000
            })
        );
        assert_eq!(
            Shlink::parse_usable(&t, 5000),
            Err(ShlError::Expired {
                exp: 1000,
                now: 5000
            })
        );
        let t = encode(&format!(
            r#"{{"url":"{SPEC_URL}","key":"{SPEC_KEY}","exp":1000.7}}"#
        ));
        assert_eq!(Shlink::parse(&t).unwrap().exp(), Some(1000));
        let t = encode(&format!(
            r#"{{"url":"{SPEC_URL}","key":"{SPEC_KEY}","v":2}}"#
        ));
        assert_eq!(
            Shlink::parse(&t).unwrap().check_usable(0),
            Err(ShlError::UnsupportedVersion { v: 2 })
        );
    }

    #[test]
    fn refusals() {
        let k = SPEC_KEY;
        let cases: &[(&str, ShlError)] = &[
            (
                r#"{"key":"K"}"#,
                ShlError::InvalidField {
                    what: WHAT,
                    field: "url",
                    reason: "is missing",
                },
            ),
            (
                &format!(r#"{{"url":"{SPEC_URL}"}}"#),
                ShlError::InvalidField {
                    what: WHAT,
                    field: "key",
                    reason: "is missing",
                },
            ),
            (
                &format!(r#"{{"url":"{SPEC_URL}","key":"{}"}}"#, &k[..42]),
                ShlError::InvalidKey,
            ),
            (
                &format!(r#"{{"url":"{SPEC_URL}","key":"{k}A"}}"#),
                ShlError::InvalidKey,
            ),
            (
                &format!(
                    r#"{{"url":"{SPEC_URL}","key":"{k}","label":"{}"}}"#,
                    "é".repeat(81)
                ),
                ShlError::LabelTooLong,
            ),
            (
                &format!(r#"{{"url":"http://ex.org/m","key":"{k}"}}"#),
                ShlError::InvalidUrl {
                    what: "link url",
                    reason: "plain http is only allowed to a loopback host",
                },
            ),
            (
                &format!(r#"{{"url":"{SPEC_URL}","key":"{k}","flag":"PU"}}"#),
                ShlError::PasscodeWithDirectFile,
            ),
            (
                &format!(r#"{{"url":"{SPEC_URL}","key":"{k}","exp":-1}}"#),
                ShlError::InvalidField {
                    what: WHAT,
                    field: "exp",
                    reason: "must be a non-negative time in seconds",
                },
            ),
            (
                "[1]",
                ShlError::Json {
                    what: WHAT,
                    reason: "not a JSON object",
                },
            ),
        ];
        for (json, want) in cases {
            assert_eq!(&Shlink::parse(&encode(json)).unwrap_err(), want, "{json}");
        }
        // An 80-character label is fine.
        let ok = format!(
            r#"{{"url":"{SPEC_URL}","key":"{k}","label":"{}"}}"#,
            "é".repeat(80)
        );
        assert!(Shlink::parse(&encode(&ok)).is_ok());
        assert_eq!(Shlink::parse("shlink:/"), Err(ShlError::NotShlink));
        assert_eq!(
            Shlink::parse("https://viewer.example/#foo"),
            Err(ShlError::NotShlink)
        );
        assert_eq!(Shlink::parse("shc:/1234"), Err(ShlError::NotShlink));
        assert_eq!(
            Shlink::parse("shlink:/ey!!"),
            Err(ShlError::Base64 { what: WHAT })
        );
        assert!(matches!(
            Shlink::parse(&"a".repeat(MAX_LINK_TEXT_LEN + 1)),
            Err(ShlError::TooLarge {
                what: "link text",
                ..
            })
        ));
    }

    #[test]
    fn key_thumbprint_matches_a_real_producer() {
        // The fixture's JWE header carries this kid for this key (tests/fixtures.rs).
        let k = ShlKey::from_base64url(SPEC_KEY).unwrap();
        assert_eq!(
            k.thumbprint(),
            "ufYGlu_C8IuzJ3HV-wQqsIv-pMm2uZm-vGy37r3hwts"
        );
        assert!(!format!("{k:?}").contains(SPEC_KEY));
    }
}
