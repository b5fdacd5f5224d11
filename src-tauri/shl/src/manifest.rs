//! The manifest request and response, and opening the files they list. No network I/O here:
//! the caller sends [`ManifestRequest::to_json`], passes the answer to [`open_manifest`], GETs
//! each [`PendingFile::url`] and passes the JWE it got to [`PendingFile::open`] (the `fetch`
//! module does all of this with `reqwest`).

use serde_json::Value;
use zeroize::Zeroizing;

use crate::encoding::{Fields, parse_json, parse_object};
use crate::endpoint::check_url;
use crate::error::{Result, ShlError, echo};
use crate::jwe;
use crate::limits::{
    MAX_CONTENT_JSON_DEPTH, MAX_LOCATION_URL_LEN, MAX_MANIFEST_FILES, MAX_MANIFEST_LEN,
    MAX_MANIFEST_PLAINTEXT_TOTAL, MAX_PASSCODE_LEN, MAX_PLAINTEXT_LEN, MAX_RECIPIENT_LEN,
};
use crate::link::ShlKey;
use crate::shc::{self, HealthCard, TrustStore};

// ---------------------------------------------------------------------------------------------
// Content types
// ---------------------------------------------------------------------------------------------

/// The file types a manifest can list (SHL "`files` array": `contentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// `application/fhir+json`: any FHIR resource, typically a Bundle. Not tamper-proof.
    FhirJson,
    /// `application/smart-health-card`: a `{"verifiableCredential": [jws, …]}` file (SHC "via
    /// File Download").
    SmartHealthCard,
    /// `application/smart-api-access`: a SMART access token response for a FHIR API.
    /// Recognised; opening it is [`ShlError::ApiAccessNotSupported`].
    SmartApiAccess,
}

impl ContentType {
    /// The media type string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FhirJson => "application/fhir+json",
            Self::SmartHealthCard => "application/smart-health-card",
            Self::SmartApiAccess => "application/smart-api-access",
        }
    }

    /// The type named by a media type string, compared case-insensitively and without
    /// parameters (`application/fhir+json; fhirVersion=4.0` is `FhirJson`).
    pub fn parse(s: &str) -> Option<Self> {
        let base = s.split(';').next().unwrap_or("").trim();
        [Self::FhirJson, Self::SmartHealthCard, Self::SmartApiAccess]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(base))
    }

    fn parse_or_err(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| ShlError::UnsupportedContentType {
            content_type: echo(s),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// The manifest request body (SHL "SMART Health Link Manifest Request"): `POST` to the link's
/// `url` with `content-type: application/json`.
///
/// `Debug` leaves out the passcode.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRequest {
    /// Required: "A string describing the recipient (e.g., the name of an organization or
    /// person) suitable for display to the Receiving User".
    pub recipient: String,
    /// Conditional: the user's passcode, when the link has the `P` flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
    /// Optional: an upper bound on the length of `embedded` payloads; longer files come as
    /// `location`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_length_max: Option<u64>,
}

impl core::fmt::Debug for ManifestRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ManifestRequest")
            .field("recipient", &self.recipient)
            .field("passcode", &self.passcode.as_ref().map(|_| "…"))
            .field("embedded_length_max", &self.embedded_length_max)
            .finish()
    }
}

impl ManifestRequest {
    /// A request from `recipient` (non-empty, at most [`MAX_RECIPIENT_LEN`] bytes, no control
    /// characters) with an optional passcode (at most [`MAX_PASSCODE_LEN`] bytes).
    pub fn new(recipient: &str, passcode: Option<&str>) -> Result<Self> {
        let err = |field, reason| ShlError::InvalidField {
            what: "manifest request",
            field,
            reason,
        };
        if recipient.trim().is_empty() {
            return Err(err("recipient", "is empty"));
        }
        if recipient.len() > MAX_RECIPIENT_LEN {
            return Err(err("recipient", "is too long"));
        }
        if recipient.chars().any(char::is_control) {
            return Err(err("recipient", "contains control characters"));
        }
        if let Some(p) = passcode
            && p.len() > MAX_PASSCODE_LEN
        {
            return Err(err("passcode", "is too long"));
        }
        Ok(Self {
            recipient: recipient.to_owned(),
            passcode: passcode.map(str::to_owned),
            embedded_length_max: None,
        })
    }

    /// The JSON body. Holds the passcode: zeroed on drop.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        // Serialising strings and an integer cannot fail.
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl Drop for ManifestRequest {
    fn drop(&mut self) {
        if let Some(p) = self.passcode.take() {
            drop(Zeroizing::new(p));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// Where a manifest file's content is.
#[derive(Clone, PartialEq, Eq)]
pub enum FileBody {
    /// `embedded`: the compact JWE itself.
    Embedded(String),
    /// `location`: a short-lived URL to `GET` the JWE from (SHL "`.files.location` links").
    Location(String),
}

impl core::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Embedded(s) => write!(f, "Embedded({} chars)", s.len()),
            Self::Location(_) => f.write_str("Location(…)"),
        }
    }
}

/// One entry of a manifest's `files` (SHL "SMART Health Link Manifest File").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// `contentType` as the server wrote it.
    pub content_type: String,
    /// The content. When the server sent both `embedded` and `location`, `embedded` ("SHALL
    /// be up-to-date as of the time the manifest is requested").
    pub body: FileBody,
    /// `lastUpdated` (ISO 8601), when given.
    pub last_updated: Option<String>,
    /// `status` (`finalized`, `can-change`, `entered-in-error`, `no-longer-valid`,
    /// `retracted`), when given.
    pub status: Option<String>,
    /// `fhirVersion`, when given ("clients MAY assume FHIR Release 4.0.1").
    pub fhir_version: Option<String>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `files`, in order.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Parses a manifest response body: at most [`MAX_MANIFEST_LEN`] bytes and
    /// [`MAX_MANIFEST_FILES`] files; `files` required, each with a string `contentType` and an
    /// `embedded` or `location` string. `list` (a FHIR List) and unknown members are ignored
    /// ("SHL Sharing Application and SHL Receiving Application SHALL ignore parameters and
    /// headers they don't recognize").
    pub fn parse(json: &[u8]) -> Result<Self> {
        const WHAT: &str = "manifest";
        if json.len() > MAX_MANIFEST_LEN {
            return Err(ShlError::TooLarge {
                what: WHAT,
                max: MAX_MANIFEST_LEN,
            });
        }
        let map = parse_object(json, MAX_CONTENT_JSON_DEPTH, WHAT)?;
        let f = Fields::new(&map, WHAT);
        let files = match map.get("files") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(f.err("files", "must be an array")),
            None => return Err(f.err("files", "is missing")),
        };
        if files.len() > MAX_MANIFEST_FILES {
            return Err(ShlError::TooLarge {
                what: "manifest files",
                max: MAX_MANIFEST_FILES,
            });
        }
        let files = files.iter().map(parse_file).collect::<Result<Vec<_>>>()?;
        Ok(Self { files })
    }

    /// Opens every file: embedded ones are decrypted, `location` ones become
    /// [`Opened::Fetch`]. One outcome per file, in order; a file that cannot be opened does not
    /// stop the others. The decrypted files together are bounded by
    /// [`MAX_MANIFEST_PLAINTEXT_TOTAL`].
    pub fn open(&self, key: &ShlKey) -> Vec<ManifestEntry> {
        let mut budget = MAX_MANIFEST_PLAINTEXT_TOTAL;
        self.files
            .iter()
            .enumerate()
            .map(|(index, file)| {
                let outcome = open_file(file, key, &mut budget);
                ManifestEntry {
                    index,
                    file: file.clone(),
                    outcome,
                }
            })
            .collect()
    }
}

fn parse_file(v: &Value) -> Result<ManifestFile> {
    const WHAT: &str = "manifest file";
    let Value::Object(map) = v else {
        return Err(ShlError::Json {
            what: WHAT,
            reason: "not a JSON object",
        });
    };
    let f = Fields::new(map, WHAT);
    let content_type = f.req_str("contentType")?;
    if content_type.len() > 256 {
        return Err(f.err("contentType", "is too long"));
    }
    let body = match (f.opt_str("embedded")?, f.opt_str("location")?) {
        (Some(e), _) => FileBody::Embedded(e.to_owned()),
        (None, Some(l)) => FileBody::Location(l.to_owned()),
        (None, None) => return Err(f.err("embedded", "is missing, and so is location")),
    };
    Ok(ManifestFile {
        content_type: content_type.to_owned(),
        body,
        last_updated: f.opt_str_max("lastUpdated", 64)?.map(str::to_owned),
        status: f.opt_str_max("status", 64)?.map(str::to_owned),
        fhir_version: f.opt_str_max("fhirVersion", 64)?.map(str::to_owned),
    })
}

fn open_file(file: &ManifestFile, key: &ShlKey, budget: &mut usize) -> Result<Opened> {
    let content_type = ContentType::parse_or_err(&file.content_type)?;
    if content_type == ContentType::SmartApiAccess {
        return Err(ShlError::ApiAccessNotSupported);
    }
    match &file.body {
        FileBody::Location(url) => {
            check_url(url, MAX_LOCATION_URL_LEN, "file location")?;
            Ok(Opened::Fetch(PendingFile {
                content_type,
                location: url.clone(),
            }))
        }
        FileBody::Embedded(jwe) => {
            let limit = MAX_PLAINTEXT_LEN.min(*budget);
            let d = jwe::decrypt_with_limit(jwe, key, limit).map_err(|e| match e {
                ShlError::TooLarge { .. } | ShlError::DecompressedTooLarge { .. }
                    if limit < MAX_PLAINTEXT_LEN =>
                {
                    ShlError::TooLarge {
                        what: "manifest files together",
                        max: MAX_MANIFEST_PLAINTEXT_TOTAL,
                    }
                }
                e => e,
            })?;
            *budget = budget.saturating_sub(d.plaintext.len());
            Ok(Opened::File(DecryptedFile::new(content_type, d)))
        }
    }
}

/// Parses a manifest response and opens its files ([`Manifest::parse`], then
/// [`Manifest::open`]).
pub fn open_manifest(json: &[u8], key: &ShlKey) -> Result<Vec<ManifestEntry>> {
    Ok(Manifest::parse(json)?.open(key))
}

/// One manifest file and what opening it gave.
#[derive(Debug)]
pub struct ManifestEntry {
    /// Its position in `files`.
    pub index: usize,
    /// The entry as listed.
    pub file: ManifestFile,
    /// The decrypted file, the URL still to fetch, or why it cannot be opened
    /// ([`ShlError::ApiAccessNotSupported`], [`ShlError::UnsupportedContentType`], a
    /// decryption error, ...).
    pub outcome: Result<Opened>,
}

/// What an openable manifest file gives.
#[derive(Debug)]
pub enum Opened {
    /// Decrypted (an `embedded` file, or a fetched `location`).
    File(DecryptedFile),
    /// A `location` to `GET` (within an hour of the manifest request; SHL "`.files.location`
    /// links"); pass the JWE it returns to [`PendingFile::open`].
    Fetch(PendingFile),
}

/// A manifest file still to be fetched. `Debug` leaves out the URL (a capability).
#[derive(Clone, PartialEq, Eq)]
pub struct PendingFile {
    content_type: ContentType,
    location: String,
}

impl core::fmt::Debug for PendingFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingFile")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl PendingFile {
    /// The URL to `GET` (answered with `content-type: application/jose` and the compact JWE).
    pub fn url(&self) -> &str {
        &self.location
    }

    /// The manifest's content type for it.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// Decrypts the JWE the location returned.
    pub fn open(&self, jwe: &str, key: &ShlKey) -> Result<DecryptedFile> {
        let d = jwe::decrypt(jwe, key)?;
        Ok(DecryptedFile::new(self.content_type, d))
    }
}

/// Opens the single file of a `U`-flag link (SHL "SMART Health Link Direct File Request (with
/// `U` Flag)"): the JWE its `url` returned. The type comes from the JWE's `cty`; without one
/// (some producers leave it out) from the content: a JSON object with `verifiableCredential`
/// is a SMART Health Card file, one with `resourceType` a FHIR resource.
pub fn open_direct_file(jwe: &str, key: &ShlKey) -> Result<DecryptedFile> {
    let d = jwe::decrypt(jwe, key)?;
    let content_type = match &d.header.cty {
        Some(cty) => ContentType::parse_or_err(cty)?,
        None => sniff(&d.plaintext)?,
    };
    if content_type == ContentType::SmartApiAccess {
        return Err(ShlError::ApiAccessNotSupported);
    }
    Ok(DecryptedFile::new(content_type, d))
}

fn sniff(plaintext: &[u8]) -> Result<ContentType> {
    let unknown = ShlError::UnexpectedContent {
        expected: "a FHIR resource or SMART Health Card file (no cty given)",
    };
    let map =
        parse_object(plaintext, MAX_CONTENT_JSON_DEPTH, "file").map_err(|_| unknown.clone())?;
    if map.contains_key("verifiableCredential") {
        Ok(ContentType::SmartHealthCard)
    } else if map.get("resourceType").is_some_and(Value::is_string) {
        Ok(ContentType::FhirJson)
    } else {
        Err(unknown)
    }
}

/// A decrypted SHL file. The plaintext is zeroed on drop; `Debug` shows only type and size.
pub struct DecryptedFile {
    content_type: ContentType,
    cty: Option<String>,
    plaintext: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for DecryptedFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DecryptedFile")
            .field("content_type", &self.content_type)
            .field("cty", &self.cty)
            .field("len", &self.plaintext.len())
            .finish()
    }
}

impl DecryptedFile {
    fn new(content_type: ContentType, d: jwe::Decrypted) -> Self {
        Self {
            content_type,
            cty: d.header.cty,
            plaintext: d.plaintext,
        }
    }

    /// The file's type (the manifest's `contentType`, or for a direct file the JWE's `cty`).
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The JWE header's `cty`, as the producer wrote it.
    pub fn cty(&self) -> Option<&str> {
        self.cty.as_deref()
    }

    /// The decrypted bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.plaintext
    }

    /// The content as a FHIR resource (`application/fhir+json`): a JSON object with a string
    /// `resourceType`, nested at most [`MAX_CONTENT_JSON_DEPTH`] deep.
    pub fn fhir_resource(&self) -> Result<Value> {
        let not = ShlError::UnexpectedContent {
            expected: "a FHIR resource",
        };
        if self.content_type != ContentType::FhirJson {
            return Err(not);
        }
        let v = parse_json(&self.plaintext, MAX_CONTENT_JSON_DEPTH, "FHIR resource")?;
        if v.get("resourceType").is_some_and(Value::is_string) {
            Ok(v)
        } else {
            Err(not)
        }
    }

    /// The JWS strings of an `application/smart-health-card` file ([`shc::parse_card_file`]).
    pub fn health_card_jws(&self) -> Result<Vec<String>> {
        if self.content_type != ContentType::SmartHealthCard {
            return Err(ShlError::UnexpectedContent {
                expected: "a SMART Health Card file",
            });
        }
        shc::parse_card_file(&self.plaintext)
    }

    /// Every card of an `application/smart-health-card` file, each read and verified against
    /// `trust` at `now` ([`shc::read_card`]).
    pub fn health_cards(&self, trust: &TrustStore, now: u64) -> Result<Vec<Result<HealthCard>>> {
        Ok(self
            .health_card_jws()?
            .iter()
            .map(|jws| shc::read_card(jws, trust, now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwe::{EncryptOptions, encrypt};

    #[test]
    fn request_json() {
        let r = ManifestRequest::new("Dr. Example, Clinic", Some("1234")).unwrap();
        assert_eq!(
            r.to_json().as_slice(),
            br#"{"recipient":"Dr. Example, Clinic","passcode":"1234"}"#
        );
        assert!(!format!("{r:?}").contains("1234"));
        let mut r = ManifestRequest::new("Dr. Example", None).unwrap();
        r.embedded_length_max = Some(10_000);
        assert_eq!(
            r.to_json().as_slice(),
            br#"{"recipient":"Dr. Example","embeddedLengthMax":10000}"#
        );
        assert!(ManifestRequest::new(" ", None).is_err());
        assert!(ManifestRequest::new("a\nb", None).is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            ContentType::parse("application/fhir+json"),
            Some(ContentType::FhirJson)
        );
        assert_eq!(
            ContentType::parse("Application/FHIR+JSON; fhirVersion=4.0"),
            Some(ContentType::FhirJson)
        );
        assert_eq!(ContentType::parse("application/json"), None);
    }

    #[test]
    fn opens_each_kind() {
        let key = ShlKey::generate();
        let fhir = encrypt(
            br#"{"resourceType":"Bundle","type":"document"}"#,
            &key,
            &EncryptOptions {
                cty: Some("application/fhir+json"),
                zip: true,
            },
        )
        .unwrap();
        let manifest = serde_json::json!({
            "list": {"resourceType": "List"},
            "files": [
                {"contentType": "application/fhir+json", "embedded": fhir, "status": "finalized"},
                {"contentType": "application/smart-health-card", "location": "https://files.example.org/f1?sig=abc"},
                {"contentType": "application/smart-api-access", "embedded": "x"},
                {"contentType": "text/plain", "embedded": "x"},
                {"contentType": "application/fhir+json", "location": "http://files.example.org/f2"},
            ],
            "extra": true
        });
        let entries = open_manifest(manifest.to_string().as_bytes(), &key).unwrap();
        assert_eq!(entries.len(), 5);
        let Ok(Opened::File(f)) = &entries[0].outcome else {
            panic!("{:?}", entries[0])
        };
        assert_eq!(f.fhir_resource().unwrap()["type"], "document");
        assert_eq!(entries[0].file.status.as_deref(), Some("finalized"));
        let Ok(Opened::Fetch(p)) = &entries[1].outcome else {
            panic!("{:?}", entries[1])
        };
        assert_eq!(p.url(), "https://files.example.org/f1?sig=abc");
        assert!(!format!("{p:?}").contains("files.example"));
        assert_eq!(
            entries[2].outcome.as_ref().unwrap_err(),
            &ShlError::ApiAccessNotSupported
        );
        assert_eq!(
            entries[3].outcome.as_ref().unwrap_err(),
            &ShlError::UnsupportedContentType {
                content_type: "text/plain".into()
            }
        );
        assert!(matches!(
            entries[4].outcome.as_ref().unwrap_err(),
            ShlError::InvalidUrl {
                what: "file location",
                ..
            }
        ));
    }

    #[test]
    fn manifest_refusals() {
        let e = |j: &str| Manifest::parse(j.as_bytes()).unwrap_err();
        assert!(matches!(
            e("{}"),
            ShlError::InvalidField {
                field: "files",
                reason: "is missing",
                ..
            }
        ));
        assert!(matches!(
            e(r#"{"files":{}}"#),
            ShlError::InvalidField { field: "files", .. }
        ));
        assert!(matches!(
            e(r#"{"files":[{"embedded":"x"}]}"#),
            ShlError::InvalidField {
                field: "contentType",
                ..
            }
        ));
        assert!(matches!(
            e(r#"{"files":[{"contentType":"application/fhir+json"}]}"#),
            ShlError::InvalidField {
                field: "embedded",
                ..
            }
        ));
        assert!(matches!(
            e(r#"{"files":[1]}"#),
            ShlError::Json {
                what: "manifest file",
                ..
            }
        ));
        let many = format!(
            r#"{{"files":[{}]}}"#,
            vec![r#"{"contentType":"a","embedded":"b"}"#; MAX_MANIFEST_FILES + 1].join(",")
        );
        assert!(matches!(
            e(&many),
            ShlError::TooLarge {
                what: "manifest files",
                ..
            }
        ));
        let deep = format!(
            r#"{{"files":[],"list":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(matches!(
            e(&deep),
            ShlError::Json {
                reason: "nested too deeply",
                ..
            }
        ));
    }

    #[test]
    fn direct_file_sniffs_without_cty() {
        let key = ShlKey::generate();
        let none = EncryptOptions::default();
        let f = open_direct_file(
            &encrypt(br#"{"resourceType":"Patient"}"#, &key, &none).unwrap(),
            &key,
        )
        .unwrap();
        assert_eq!(f.content_type(), ContentType::FhirJson);
        let f = open_direct_file(
            &encrypt(br#"{"verifiableCredential":[]}"#, &key, &none).unwrap(),
            &key,
        )
        .unwrap();
        assert_eq!(f.content_type(), ContentType::SmartHealthCard);
        assert!(matches!(
            open_direct_file(&encrypt(b"hello", &key, &none).unwrap(), &key),
            Err(ShlError::UnexpectedContent { .. })
        ));
        let api = EncryptOptions {
            cty: Some("application/smart-api-access"),
            zip: false,
        };
        assert_eq!(
            open_direct_file(&encrypt(b"{}", &key, &api).unwrap(), &key).unwrap_err(),
            ShlError::ApiAccessNotSupported
        );
    }
}
