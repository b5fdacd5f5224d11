//! The doctor app opens SMART Health Links and SMART Health Cards (docs/shl.md "In the doctor
//! app"): `carekey-shl` parses, fetches, decrypts and verifies; this module imports what it
//! gave into the doctor's vault as a Patients entry of its own.
//!
//! - A `shlink:/…` (or viewer URL): refused when expired (SHL payload `exp`); a `P` link
//!   without passcode is `passcode_required`, a refused one `passcode_rejected` with the
//!   attempts left (SHL "SMART Health Link Manifest Request"); `U` is one direct `GET`;
//!   otherwise the manifest `POST` with `recipient` = the doctor's card name, then every
//!   `location`. Files: `application/fhir+json` (unsigned), `application/smart-health-card`
//!   (each card verified), `application/smart-api-access` refused as not supported.
//! - `shc:/…` text, one QR or the chunks `shc:/C/N/…` one per line: read and verified.
//! - A card is verified against its issuer's key set, fetched from `<iss>/.well-known/jwks.json`
//!   (SHC "Determining keys associated with an issuer"); when it cannot be fetched the card
//!   still opens, as "issuer not verified".
//!
//! Ids: the entry id is 16 bytes (hex) derived under `carekey-app/smart-import-id/v1` from
//! the link's `url` and key, or from a card's JWS, so opening the same link again updates its
//! entry instead of adding another; its `share` is `smart:<id>`, and every imported record has
//! `Origin::Imported { source: "smart:<id>" }`, which is how `chart` finds them. Records are
//! stored unsigned (nothing of it is Carekey-signed), in a vault namespace of the entry's own
//! ([`SMART_NAMESPACE_LABEL`]): the same `Type/id` from a Carekey share or another link is
//! another record.

use std::collections::HashMap;
use std::time::Duration;

use carekey_shl::fetch::ShlClient;
use carekey_shl::{ContentType, Jwks, Opened, ShlError, Shlink, TrustStore, Verification, shc};
use carekey_vault::{ImportControl, ImportOptions};
use serde::Serialize;
use serde_json::{Value, json};

use super::doctor::{DoctorApp, PatientLinkView};
use super::smart_source::SMART_SOURCE_PREFIX;
use super::{derived_id, hex, now};
use crate::error::{AppError, Result};
use crate::ipc::{self, Validate};

/// Label of the ids of SMART imports.
const SMART_ID_LABEL: &[u8] = b"carekey-app/smart-import-id/v1\0";
/// Label of the vault namespace of one SMART import's records (derived from its entry id): a
/// record that came through a SMART Health Link or Card is never the record of the same
/// `Type/id` a Carekey share brought (those are under `share:<tag>/`), one imported plainly,
/// or one of another link (docs/shl.md "Storage"; docs/vault.md, the `records` table).
const SMART_NAMESPACE_LABEL: &[u8] = b"carekey-app/smart-record-namespace/v1\0";

/// Trust text of content that came unsigned through a SMART Health Link.
const UNSIGNED_SHL: &str = "unsigned (SMART Health Link)";

/// What opening a SMART Health Link or Card gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmartOpenView {
    /// The new Patients entry (open it with `chart`).
    pub patient: PatientLinkView,
    /// Files of the link that were not imported, each with why (fixed sentences, no URLs).
    pub skipped: Vec<String>,
}

/// What opening a link gave, file by file: [`DoctorApp::open_smart_link_files`] (the CLI's
/// `doctor open` prints a line per file and can write them out; the app's screen shows only
/// [`SmartOpenView`]).
#[derive(Debug)]
pub struct SmartOpened {
    /// The Patients entry and the skipped files' sentences, as `open_smart_link` answers.
    pub view: SmartOpenView,
    /// The link's label, when it has one (a card text has none).
    pub label: Option<String>,
    /// Every file of the link (a card text: its one card), in the link's order.
    pub files: Vec<SmartFile>,
}

/// One file of an opened link.
#[derive(Debug)]
pub struct SmartFile {
    /// Its position in the link's manifest (from 0).
    pub index: usize,
    /// What it held, or why it was skipped.
    pub outcome: std::result::Result<SmartFileContent, AppError>,
}

/// The decrypted content of one file. Its `Debug` leaves out the bytes (patient data).
#[derive(Clone)]
pub struct SmartFileContent {
    /// Its content type (`application/fhir+json`, `application/smart-health-card`).
    pub content_type: &'static str,
    /// The FHIR resource type it holds (`Bundle`, `Condition`, …), or `cards`.
    pub kind: String,
    /// The decrypted file as the link served it: PLAINTEXT health data.
    pub bytes: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SmartFileContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartFileContent")
            .field("content_type", &self.content_type)
            .field("kind", &self.kind)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// One piece of content ready to import.
struct Content {
    resources: Vec<Value>,
    /// `None`: unsigned FHIR; `Some((iss, verified))`: a card.
    card: Option<(String, bool)>,
}

impl DoctorApp {
    /// Opens a SMART Health Link (`shlink:/…`, a viewer URL) or SMART Health Card (`shc:/…`,
    /// chunks one per line) and imports its content as a new Patients entry. An empty `text`
    /// opens the code the last scan recognised ([`Self::scan_text`] answered `smart_link`).
    pub async fn open_smart_link(&self, args: ipc::OpenSmartLink) -> Result<SmartOpenView> {
        Ok(self.open_smart_link_files(args).await?.view)
    }

    /// [`Self::open_smart_link`], also answering every file of the link with its decrypted
    /// bytes (the CLI's `doctor open` lists and writes them). The import is the same.
    pub async fn open_smart_link_files(&self, args: ipc::OpenSmartLink) -> Result<SmartOpened> {
        args.validate()?;
        let recipient = self.card().await?.body.name.clone();
        let text = if args.text.trim().is_empty() {
            self.smart_scanned()?.ok_or_else(|| {
                AppError::invalid_input("code: scan or paste a SMART Health Link first")
            })?
        } else {
            zeroize::Zeroizing::new(args.text.clone())
        };
        let client = ShlClient::new(&recipient)?;
        let mut keys = IssuerKeys {
            client: ShlClient::with_timeouts(&recipient, KEYS_CONNECT_TIMEOUT, KEYS_TIMEOUT)?,
            sets: HashMap::new(),
        };
        let t = now();
        let first = text.trim_start();
        let mut files = Vec::new();
        let (contents, skipped, label, id) = if first
            .get(..5)
            .is_some_and(|h| h.eq_ignore_ascii_case("shc:/"))
        {
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let jws = shc::assemble_qr(&lines)?;
            let content = read_card(&mut keys, &jws, t).await?;
            files.push(SmartFile {
                index: 0,
                outcome: Ok(SmartFileContent {
                    content_type: ContentType::SmartHealthCard.as_str(),
                    kind: "cards".to_owned(),
                    bytes: zeroize::Zeroizing::new(jws.as_bytes().to_vec()),
                }),
            });
            let id = derived_id(SMART_ID_LABEL, &[b"card", jws.as_bytes()]);
            (vec![content], Vec::new(), None, id)
        } else {
            let link = Shlink::parse(text.trim()).map_err(|e| match e {
                ShlError::NotShlink => {
                    AppError::not_supported("this is not a SMART Health Link or SMART Health Card")
                }
                e => e.into(),
            })?;
            link.check_usable(t)?;
            let entries = client.open(&link, args.passcode.as_deref(), t).await?;
            let mut contents = Vec::new();
            let mut skipped = Vec::new();
            let mut first_err: Option<ShlError> = None;
            for e in entries {
                let index = e.index;
                // Why a file was skipped: its sentence for the screen, its error for the list.
                let mut skip = |err: AppError, files: &mut Vec<SmartFile>| {
                    skipped.push(err.message.clone());
                    files.push(SmartFile {
                        index,
                        outcome: Err(err),
                    });
                };
                let file = match e.outcome {
                    Ok(Opened::File(f)) => f,
                    Ok(Opened::Fetch(_)) => {
                        skip(
                            AppError::new("not_fetched", "a file could not be fetched"),
                            &mut files,
                        );
                        continue;
                    }
                    Err(err) => {
                        skip(AppError::from(err.clone()), &mut files);
                        first_err.get_or_insert(err);
                        continue;
                    }
                };
                let opened = |kind: String| SmartFile {
                    index,
                    outcome: Ok(SmartFileContent {
                        content_type: file.content_type().as_str(),
                        kind,
                        bytes: zeroize::Zeroizing::new(file.bytes().to_vec()),
                    }),
                };
                match file.content_type() {
                    ContentType::FhirJson => match file.fhir_resource() {
                        Ok(r) => {
                            let kind = r
                                .get("resourceType")
                                .and_then(Value::as_str)
                                .unwrap_or("?")
                                .to_owned();
                            files.push(opened(kind));
                            contents.push(Content {
                                resources: resources_of(r),
                                card: None,
                            });
                        }
                        Err(err) => {
                            skip(AppError::from(err.clone()), &mut files);
                            first_err.get_or_insert(err);
                        }
                    },
                    ContentType::SmartHealthCard => match file.health_card_jws() {
                        Ok(list) => {
                            files.push(opened("cards".to_owned()));
                            for jws in list {
                                match read_card(&mut keys, &jws, t).await {
                                    Ok(c) => contents.push(c),
                                    Err(err) => skipped.push(err.message),
                                }
                            }
                        }
                        Err(err) => {
                            skip(AppError::from(err.clone()), &mut files);
                            first_err.get_or_insert(err);
                        }
                    },
                    _ => {
                        let err = ShlError::ApiAccessNotSupported;
                        skip(AppError::from(err.clone()), &mut files);
                        first_err.get_or_insert(err);
                    }
                }
            }
            if contents.is_empty() {
                return Err(match first_err {
                    Some(e) => e.into(),
                    None => AppError::new(
                        "invalid_input",
                        "this SMART Health Link holds nothing this app can open",
                    ),
                });
            }
            let id = derived_id(
                SMART_ID_LABEL,
                &[
                    b"link",
                    link.url().as_bytes(),
                    link.key().to_base64url().as_bytes(),
                ],
            );
            (contents, skipped, link.label().map(str::to_owned), id)
        };
        let view = self.import_smart(contents, label.clone(), hex(&id)).await?;
        self.clear_smart_scanned();
        Ok(SmartOpened {
            view: SmartOpenView {
                patient: view,
                skipped,
            },
            label,
            files,
        })
    }

    /// Stores the resources in one import and adds (or replaces) the Patients entry `id`.
    async fn import_smart(
        &self,
        contents: Vec<Content>,
        label: Option<String>,
        id: String,
    ) -> Result<PatientLinkView> {
        let trust = trust_text(&contents);
        let mut resources: Vec<Value> = contents.into_iter().flat_map(|c| c.resources).collect();
        // Card resources have no `id` (SHC "Health Cards are Compact": `resource:N` fullUrls):
        // give them stable ones, so opening the same card again replaces instead of adding.
        for (i, r) in resources.iter_mut().enumerate() {
            if r.get("id").and_then(Value::as_str).is_none()
                && let Some(o) = r.as_object_mut()
            {
                o.insert("id".into(), Value::String(format!("{}-{i}", &id[..16])));
            }
        }
        let name = patient_name(&resources)
            .or(label)
            .unwrap_or_else(|| "SMART Health Link".to_owned());
        let share = format!("{SMART_SOURCE_PREFIX}{id}");
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&bundle).map_err(|_| AppError::internal())?;
        let namespace = smart_namespace(&id);
        self.vault_run(move |v| {
            let report = v.import_bundle_namespaced(
                &bytes,
                &ImportOptions {
                    source: Some(share.clone()),
                    share: None,
                },
                &namespace,
                &mut ImportControl::default(),
            )?;
            let view = PatientLinkView {
                id,
                name,
                trust,
                share,
                expires_at: u64::MAX,
                status: "active".to_owned(),
                records: report.records,
                fetched_at: Some(now()),
            };
            DoctorApp::save_link_view(v, view.clone())?;
            Ok(view)
        })
        .await
    }
}

/// The vault namespace of the records of SMART entry `id` (hex): 16 bytes derived under
/// [`SMART_NAMESPACE_LABEL`].
fn smart_namespace(id: &str) -> [u8; 16] {
    derived_id(SMART_NAMESPACE_LABEL, &[id.as_bytes()])
}

/// Issuers' key sets fetched during one open (each issuer asked once), on a client with
/// shorter timeouts than the link's: a key set is small and its absence is not fatal.
struct IssuerKeys {
    client: ShlClient,
    sets: HashMap<String, Option<Jwks>>,
}

/// Connect timeout of a key-set request.
const KEYS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole timeout of a key-set request.
const KEYS_TIMEOUT: Duration = Duration::from_secs(15);
/// Issuers asked in one open; cards of further issuers are "issuer not verified".
const MAX_ISSUERS: usize = 8;

impl IssuerKeys {
    async fn get(&mut self, iss: &str) -> Option<Jwks> {
        if let Some(k) = self.sets.get(iss) {
            return k.clone();
        }
        if self.sets.len() >= MAX_ISSUERS {
            return None;
        }
        // Unreachable, refused or malformed key sets count as none: the card is then "issuer
        // not verified", never refused for it (docs/shl.md).
        let k = self.client.get_issuer_jwks(iss).await.ok();
        self.sets.insert(iss.to_owned(), k.clone());
        k
    }
}

/// Reads one card JWS: its issuer's key set fetched (when reachable), then verified.
async fn read_card(keys: &mut IssuerKeys, jws: &str, now: u64) -> Result<Content> {
    let card = shc::parse_jws(jws)?;
    let mut trust = TrustStore::new();
    if let Some(jwks) = keys.get(card.iss()).await {
        trust.add(card.iss(), jwks);
    }
    let card = card.verify(&trust, now)?;
    let verified = matches!(card.verification, Verification::Verified { .. });
    Ok(Content {
        resources: resources_of(card.fhir_bundle),
        card: Some((card.iss, verified)),
    })
}

/// The resources of a Bundle's entries, or the resource itself.
fn resources_of(v: Value) -> Vec<Value> {
    if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        v.get("entry")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get("resource").cloned())
                    .filter(Value::is_object)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![v]
    }
}

/// The weakest of the contents' provenance: unsigned FHIR, else the first card whose issuer
/// is not verified, else the first card's issuer.
fn trust_text(contents: &[Content]) -> String {
    if contents.iter().any(|c| c.card.is_none()) {
        return UNSIGNED_SHL.to_owned();
    }
    let cards = contents.iter().filter_map(|c| c.card.as_ref());
    if let Some((iss, _)) = cards.clone().find(|(_, ok)| !ok) {
        return format!("SMART Health Card from {}, issuer not verified", clip(iss));
    }
    match cards.clone().next() {
        Some((iss, _)) => format!("SMART Health Card from {}, signature valid", clip(iss)),
        None => UNSIGNED_SHL.to_owned(),
    }
}

/// An issuer URL as shown: at most 120 characters, printable.
fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// "Given Family" of the first Patient resource, if it has a name.
fn patient_name(resources: &[Value]) -> Option<String> {
    let p = resources
        .iter()
        .find(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"))?;
    let n = p.get("name")?.as_array()?.first()?;
    if let Some(t) = n.get("text").and_then(Value::as_str) {
        return Some(clip(t));
    }
    let mut parts: Vec<&str> = n
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(f) = n.get("family").and_then(Value::as_str) {
        parts.push(f);
    }
    (!parts.is_empty()).then(|| clip(&parts.join(" ")))
}
