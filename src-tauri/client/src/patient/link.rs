//! Publishing a share's records as a SMART Health Link (issue 15; docs/shl.md "Publishing";
//! docs/relay.md "SMART Health Links"; HL7 SMART Health Cards and Links IG STU1, "SMART
//! Health Links", cited as SHL), for a clinic that does not run Carekey.
//!
//! The device encrypts each selected FHIR record as one JWE (`dir`, `A256GCM`) under a fresh
//! 32-byte key per link (SHL "Encrypting and Decrypting Files"); the relay gets the ciphertext,
//! the Argon2id hash of the passcode, the allowed attempts and `exp`, and answers the SHL
//! manifest at a 256-bit URL. The key goes only into the `shlink:/` text the patient shows.
//! This is outside Carekey's own protocol (docs/protocol.md): whoever holds the link and the
//! passcode reads the records, the relay cannot tell who that is, and deleting the link stops
//! new downloads only (docs/threat-model.md "SMART Health Links").

use argon2::{Algorithm, Argon2, Params, Version};
use carekey_relay_api as api;
use carekey_shl::{EncryptOptions, Flags, ShlKey, Shlink, fhir, jwe};
use carekey_vault::Vault;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
use crate::ids::ShareId;
use crate::now;
use crate::relay::b64;

use super::{AccessEvent, AccessKind, LoggedEvent, Patient};

/// The honest sentence the share screen shows next to a link (issue 15), `<date>` replaced by
/// [`link_warning`].
pub const LINK_WARNING: &str = "Anyone with this code and passcode can read these records until <date>. We cannot tell who opened it. Deleting it stops new downloads, not copies.";
/// Relay audit kind of a manifest request (relay-formats.md "Relay audit chain": body =
/// outcome u8 (0 served, 1 wrong passcode) || the self-asserted recipient).
pub(super) const AUDIT_KIND_LINK_REQUESTED: u8 = 9;
/// Vault state record holding the links (apart from the main patient state).
pub const LINKS_RECORD: &str = "patient-shl-links";
/// Domain label of the relay's name for a link id (relay-formats.md "SMART Health Link").
const LINK_HASH_LABEL: &[u8] = b"carekey/v1/shl-link-id";
/// Failed passcode attempts a link allows unless told otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Digits of a generated passcode.
const GENERATED_PASSCODE_DIGITS: usize = 8;
/// Shortest passcode the patient may choose.
const MIN_PASSCODE_LEN: usize = 4;
/// Format version of the [`LINKS_RECORD`] record.
const LINKS_RECORD_VERSION: u32 = 1;
/// `objects[0]` of a logged manifest request that was served.
const SERVED: &str = "served";
/// `objects[0]` of a logged manifest request refused for its passcode.
const WRONG_PASSCODE: &str = "wrong_passcode";

/// [`LINK_WARNING`] with the date filled in (the UI formats the date for its locale).
pub fn link_warning(date: &str) -> String {
    LINK_WARNING.replace("<date>", date)
}

/// The passcode of a new link. SHL "P" flag: on by default.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum LinkPasscode {
    /// A random 8-digit passcode, answered in [`PublishedLink::passcode`].
    #[default]
    Generated,
    /// The patient's own (at least 4 characters).
    Chosen(String),
    /// No passcode: whoever has the link reads the records.
    Off,
}

/// What the patient chose for a new link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkOptions {
    /// The passcode.
    #[serde(default)]
    pub passcode: LinkPasscode,
    /// Unix seconds after which the link answers 404 (at most the share's own expiry).
    pub expires_at: u64,
    /// Failed passcode attempts before the link dies.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The link's `label` (SHL: at most 80 characters), shown by the viewer.
    #[serde(default)]
    pub label: Option<String>,
    /// Record ids to publish (the share's items); empty: every FHIR record of the share.
    #[serde(default)]
    pub records: Vec<[u8; 16]>,
}

fn default_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

/// A link just published: what the patient shows (QR of `shlink`, the passcode, the warning).
/// `Debug` leaves out the link and the passcode (whoever has both reads the records).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedLink {
    /// Its handle for [`Patient::delete_link`] (64 hex characters; names no secret).
    pub id: String,
    /// The `shlink:/…` text: render it as the QR code. It holds the key.
    pub shlink: String,
    /// The passcode to tell the clinic (`None`: the link has none).
    pub passcode: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// Files published.
    pub files: usize,
    /// Attachments (PDFs, images) written inline into their records.
    pub attachments: usize,
    /// Attachments of the selected records left out (too large for a link file, or for the
    /// link); `left_out_note` says why.
    pub left_out: usize,
    /// Why attachments were left out, in fixed words (`left_out_note`), when any were.
    pub left_out_note: Option<String>,
    /// [`link_warning`]'s sentence, with the date as Unix seconds (the UI formats its own).
    pub warning: String,
}

/// One of the patient's links, as the share screen lists it. `Debug` leaves out the link and
/// the passcode.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkView {
    /// Handle for [`Patient::delete_link`].
    pub id: String,
    /// The share it was published from.
    pub share: String,
    /// The `shlink:/…` text (to show the QR again).
    pub shlink: String,
    /// The passcode (`None`: none).
    pub passcode: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// Whether `now` is past `expires_at`.
    pub expired: bool,
    /// Files published.
    pub files: usize,
    /// The label.
    pub label: Option<String>,
}

/// A link as the device keeps it (vault record [`LINKS_RECORD`]).
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct LinkRecord {
    id: String,
    share: [u8; 16],
    shlink: String,
    passcode: Option<String>,
    expires_at: u64,
    files: usize,
    label: Option<String>,
}

impl LinkRecord {
    fn view(&self, now: u64) -> LinkView {
        LinkView {
            id: self.id.clone(),
            share: ShareId(self.share).to_string(),
            shlink: self.shlink.clone(),
            passcode: self.passcode.clone(),
            expires_at: self.expires_at,
            expired: now >= self.expires_at,
            files: self.files,
            label: self.label.clone(),
        }
    }
}

impl Drop for LinkRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.shlink.zeroize();
        if let Some(p) = &mut self.passcode {
            p.zeroize();
        }
    }
}

// Debug without the secrets: the link text holds the key (docs/shl.md "What is refused":
// no Debug output holds a key or a passcode).
impl std::fmt::Debug for LinkPasscode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Generated => "Generated",
            Self::Chosen(_) => "Chosen(<redacted>)",
            Self::Off => "Off",
        })
    }
}

impl std::fmt::Debug for PublishedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedLink")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("files", &self.files)
            .field("attachments", &self.attachments)
            .field("left_out", &self.left_out)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LinkView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkView")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("expired", &self.expired)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRecord")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct LinksFile {
    version: u32,
    links: Vec<LinkRecord>,
}

/// The relay's name of a link id: SHA-256 of the label, 0x00 and the id (relay-formats.md
/// "SMART Health Link"), in hex.
fn link_hash_hex(link_id: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(LINK_HASH_LABEL);
    h.update([0]);
    h.update(link_id);
    data_encoding::HEXLOWER.encode(&h.finalize())
}

/// Argon2id of the passcode with the relay's fixed parameters (relay-formats.md "SMART Health
/// Link passcode"): the relay recomputes it for each passcode a viewer offers.
fn passcode_hash(passcode: &str) -> Result<api::ShlPasscodeHash> {
    let mut salt = [0u8; api::SHL_PASSCODE_SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let params = Params::new(
        api::SHL_PASSCODE_M_KIB,
        api::SHL_PASSCODE_T,
        api::SHL_PASSCODE_P,
        Some(api::SHL_PASSCODE_HASH_LEN),
    )
    .map_err(|_| ClientError::InvalidInput("passcode hash parameters"))?;
    let mut out = Zeroizing::new([0u8; api::SHL_PASSCODE_HASH_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passcode.as_bytes(), &salt, out.as_mut())
        .map_err(|_| ClientError::InvalidInput("passcode hash"))?;
    Ok(api::ShlPasscodeHash {
        salt: b64(&salt),
        hash: b64(out.as_ref()),
    })
}

fn generated_passcode() -> String {
    (0..GENERATED_PASSCODE_DIGITS)
        .map(|_| {
            // Rejection sampling: uniform digits.
            loop {
                let b = (OsRng.next_u32() & 0xff) as u8;
                if b < 250 {
                    break char::from(b'0' + b % 10);
                }
            }
        })
        .collect()
}

/// Whether `data` is a FHIR resource (JSON with a `resourceType`): what SHL's
/// `application/fhir+json` holds.
fn is_fhir_resource(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("resourceType").map(serde_json::Value::is_string))
        .unwrap_or(false)
}

/// One selected record of a link and the attachments stored with it (the share's items
/// after it, as `items_from_vault` orders them: a record, then its files).
struct LinkRecordIn<'a> {
    data: &'a [u8],
    attachments: Vec<&'a [u8]>,
}

/// Why an attachment was left out of a link (the publish answer counts them:
/// [`left_out_note`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct LeftOut {
    /// Over what one link file holds ([`api::MAX_SHL_FILE_BYTES`]) with its record.
    too_large: usize,
    /// Over what the whole link holds ([`api::MAX_SHL_LINK_BYTES`]) with the files before it.
    link_full: usize,
    /// Its record has no attachment without data to put it in.
    no_place: usize,
}

impl LeftOut {
    fn total(&self) -> usize {
        self.too_large + self.link_full + self.no_place
    }
}

/// The largest attachment, in bytes, that fits a link file on its own: base64 twice (in the
/// FHIR JSON, then in the JWE) takes 16/9 of it, DEFLATE aside ([`carekey_shl::fhir`]).
pub const MAX_LINK_ATTACHMENT_BYTES: usize = api::MAX_SHL_FILE_BYTES / 16 * 9;

/// "2 attached files were left out: 1 is larger than the 2.4 MB one file of a link holds; 1
/// did not fit in the 7.3 MB a link holds." `None` when none was. Fixed wording: no file name,
/// no patient data.
pub fn left_out_note(too_large: usize, link_full: usize, no_place: usize) -> Option<String> {
    let total = too_large + link_full + no_place;
    if total == 0 {
        return None;
    }
    let mb = |b: usize| format!("{:.1} MB", b as f64 / 1_000_000.0);
    let mut why = Vec::new();
    if too_large > 0 {
        why.push(format!(
            "{too_large} {} larger than the {} one file of a link holds",
            if too_large == 1 { "is" } else { "are" },
            mb(MAX_LINK_ATTACHMENT_BYTES)
        ));
    }
    if link_full > 0 {
        why.push(format!(
            "{link_full} did not fit in the {} a link holds",
            mb(api::MAX_SHL_LINK_BYTES)
        ));
    }
    if no_place > 0 {
        why.push(format!("{no_place} had no place in its record"));
    }
    Some(format!(
        "{total} attached {} left out: {}.",
        if total == 1 { "file was" } else { "files were" },
        why.join("; ")
    ))
}

/// Attachments going inline into one record: where, and the bytes.
type Inlined<'a> = Vec<(fhir::Slot, &'a [u8])>;

/// A link file before encryption: its records (one, or a group) and, per record, the
/// attachments that go in.
struct PlannedFile<'a> {
    records: Vec<(&'a LinkRecordIn<'a>, Inlined<'a>)>,
    /// A `collection` Bundle of the records (the link groups them), even of one.
    grouped: bool,
}

/// The files of a link: one per record while they fit the relay's file count
/// ([`api::MAX_SHL_FILES`]), so a viewer lists them one by one; past that, the records in
/// order, grouped into FHIR `collection` Bundles of equal size (one Bundle per file, SHL
/// "application/fhir+json"), so a share of thousands of records still fits one link.
///
/// Then each record's stored attachments go back inline (FHIR R4 Attachment `data`, `size`,
/// `hash`; [`carekey_shl::fhir`]) in share order while the file stays within
/// [`api::MAX_SHL_FILE_BYTES`] and the link within [`api::MAX_SHL_LINK_BYTES`], counted with
/// [`fhir::jwe_len_bound`] (the longest JWE whatever DEFLATE achieves, so what is planned
/// always fits); the others are left out and counted.
fn plan_files<'a>(records: &'a [LinkRecordIn<'a>]) -> (Vec<PlannedFile<'a>>, LeftOut) {
    let per_file = if records.len() <= api::MAX_SHL_FILES {
        1
    } else {
        records.len().div_ceil(api::MAX_SHL_FILES)
    };
    let mut files: Vec<PlannedFile<'a>> = records
        .chunks(per_file)
        .map(|group| PlannedFile {
            records: group.iter().map(|r| (r, Vec::new())).collect(),
            grouped: per_file > 1,
        })
        .collect();
    // Plaintext length of each file without attachments (a group's Bundle adds ~16 bytes a
    // record and 64 around).
    let mut plain: Vec<usize> = files
        .iter()
        .map(|f| {
            f.records
                .iter()
                .map(|(r, _)| r.data.len() + 16)
                .sum::<usize>()
                + 64
        })
        .collect();
    let mut total: usize = plain.iter().map(|p| fhir::jwe_len_bound(*p)).sum();
    let mut left = LeftOut::default();
    for (f, file) in files.iter_mut().enumerate() {
        for (rec, chosen) in &mut file.records {
            if rec.attachments.is_empty() {
                continue;
            }
            let resource: Option<serde_json::Value> = serde_json::from_slice(rec.data).ok();
            let slots = resource
                .as_ref()
                .map(|r| fhir::stored_slots(r, rec.attachments.len()))
                .unwrap_or_default();
            left.no_place += rec.attachments.len().saturating_sub(slots.len());
            // A record that takes files is written again from its parsed JSON: counted at the
            // longer of the two (whitespace, escapes and number forms may differ).
            if let Some(r) = &resource
                && !slots.is_empty()
            {
                let again = serde_json::to_vec(r).map_or(0, |v| v.len());
                let before = fhir::jwe_len_bound(plain[f]);
                plain[f] = plain[f].saturating_add(again.saturating_sub(rec.data.len()));
                total = total - before + fhir::jwe_len_bound(plain[f]);
            }
            for (slot, data) in slots.into_iter().zip(&rec.attachments) {
                let grown = plain[f].saturating_add(fhir::inline_len_bound(data.len()));
                let before = fhir::jwe_len_bound(plain[f]);
                let after = fhir::jwe_len_bound(grown);
                if after > api::MAX_SHL_FILE_BYTES {
                    left.too_large += 1;
                } else if total - before + after > api::MAX_SHL_LINK_BYTES {
                    left.link_full += 1;
                } else {
                    total = total - before + after;
                    plain[f] = grown;
                    chosen.push((slot, *data));
                }
            }
        }
    }
    (files, left)
}

/// The plaintext of a planned file: the record's JSON as it is when nothing goes inline (the
/// viewer gets the share's bytes unchanged), else the record with its attachments written in;
/// a group as a `collection` Bundle.
fn file_plaintext(file: &PlannedFile<'_>) -> Result<Zeroizing<Vec<u8>>> {
    fn record_bytes(
        rec: &LinkRecordIn<'_>,
        atts: &[(fhir::Slot, &[u8])],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if atts.is_empty() {
            return Ok(Zeroizing::new(rec.data.to_vec()));
        }
        let mut v: serde_json::Value = serde_json::from_slice(rec.data)
            .map_err(|_| ClientError::InvalidInput("a record is not JSON"))?;
        for (slot, data) in atts {
            fhir::put_inline(&mut v, *slot, data);
        }
        serde_json::to_vec(&v)
            .map(Zeroizing::new)
            .map_err(|_| ClientError::InvalidInput("a record could not be written"))
    }
    if !file.grouped
        && let [(rec, atts)] = &file.records[..]
    {
        return record_bytes(rec, atts);
    }
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(br#"{"resourceType":"Bundle","type":"collection","entry":["#);
    for (i, (rec, atts)) in file.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Each record is already checked FHIR JSON: it goes in as it is.
        out.extend_from_slice(br#"{"resource":"#);
        out.extend_from_slice(&record_bytes(rec, atts)?);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

impl Patient {
    /// Publishes records of `share_id` as a SMART Health Link: one JWE per FHIR record (a
    /// Bundle stays one file; past [`api::MAX_SHL_FILES`] records, grouped into Bundles) under
    /// a fresh key, uploaded with the passcode hash through an
    /// owner-signed write of the share (so its audit log records every download). Attachments
    /// (PDFs, images) go inline into their records (FHIR R4 Attachment `data`, `size`,
    /// `hash`): SHL files are FHIR JSON, and a clinic without Carekey has nowhere else to get
    /// them. Those over the relay's size caps are left out and counted
    /// ([`PublishedLink::left_out`]).
    pub async fn publish_link(
        &mut self,
        share_id: &ShareId,
        opts: LinkOptions,
    ) -> Result<PublishedLink> {
        if opts.expires_at <= now() {
            return Err(ClientError::InvalidInput(
                "the link must expire in the future",
            ));
        }
        if opts.max_attempts == 0 || opts.max_attempts > api::MAX_SHL_ATTEMPTS {
            return Err(ClientError::InvalidInput("attempts must be 1 to 100"));
        }
        let passcode = match &opts.passcode {
            LinkPasscode::Generated => Some(generated_passcode()),
            LinkPasscode::Chosen(p) if p.chars().count() >= MIN_PASSCODE_LEN => Some(p.clone()),
            LinkPasscode::Chosen(_) => {
                return Err(ClientError::InvalidInput(
                    "a passcode has at least 4 characters",
                ));
            }
            LinkPasscode::Off => None,
        };
        let passcode = passcode.map(Zeroizing::new);
        let st = self
            .shares
            .get_mut(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        if opts.expires_at > st.options.expires_at {
            return Err(ClientError::InvalidInput("a link cannot outlive its share"));
        }
        let key = ShlKey::generate();
        // The share's items are each record followed by its attachments (`items_from_vault`):
        // an attachment goes with the record before it, when that record is selected.
        let mut records: Vec<LinkRecordIn<'_>> = Vec::new();
        let mut selected = false;
        for it in &st.items {
            if it.attachment {
                if selected && let Some(r) = records.last_mut() {
                    r.attachments.push(it.data.as_slice());
                }
                continue;
            }
            selected = (opts.records.is_empty() || opts.records.contains(&it.record_id))
                && is_fhir_resource(&it.data);
            if selected {
                records.push(LinkRecordIn {
                    data: it.data.as_slice(),
                    attachments: Vec::new(),
                });
            }
        }
        if records.is_empty() {
            return Err(ClientError::InvalidInput(
                "no FHIR record of the share was selected",
            ));
        }
        let (planned, left) = plan_files(&records);
        let attachments: usize = planned
            .iter()
            .flat_map(|f| &f.records)
            .map(|(_, a)| a.len())
            .sum();
        let mut files = Vec::new();
        for file in &planned {
            let plain = file_plaintext(file)?;
            let jwe = jwe::encrypt(
                &plain,
                &key,
                &EncryptOptions {
                    cty: Some("application/fhir+json"),
                    zip: true,
                },
            )
            .map_err(|_| ClientError::InvalidInput("a record is too large for a link"))?;
            if jwe.len() > api::MAX_SHL_FILE_BYTES {
                return Err(ClientError::InvalidInput(
                    "a record is too large for a link",
                ));
            }
            files.push(api::ShlFileUpload {
                content_type: "application/fhir+json".into(),
                jwe,
            });
        }
        let n = files.len();
        let req = api::CreateShlRequest {
            files,
            passcode: passcode.as_deref().map(|p| passcode_hash(p)).transpose()?,
            max_attempts: opts.max_attempts,
            expires_at: opts.expires_at,
        };
        let made = self
            .relay
            .create_link(&mut st.owner, share_id, &req)
            .await?;
        let link_id = data_encoding::BASE64URL_NOPAD
            .decode(made.link_id.as_bytes())
            .ok()
            .filter(|v| v.len() == api::SHL_LINK_ID_LEN)
            .ok_or(ClientError::BadResponse { what: "link id" })?;
        // The URL must be this relay's own manifest route (a relay answering another URL
        // would send the clinic elsewhere).
        if made.url != format!("{}/shl/{}", self.relay.base(), made.link_id) {
            return Err(ClientError::BadResponse { what: "link url" });
        }
        let flags = Flags {
            passcode: passcode.is_some(),
            ..Flags::default()
        };
        let link = Shlink::new(
            &made.url,
            key,
            flags,
            opts.label.as_deref(),
            Some(opts.expires_at),
        )
        .map_err(|_| ClientError::InvalidInput("link label or relay URL not usable in a link"))?;
        let rec = LinkRecord {
            id: link_hash_hex(&link_id),
            share: share_id.to_bytes(),
            shlink: link.to_text().to_string(),
            passcode: passcode.as_deref().cloned(),
            expires_at: opts.expires_at,
            files: n,
            label: opts.label,
        };
        let out = PublishedLink {
            id: rec.id.clone(),
            shlink: rec.shlink.clone(),
            passcode: rec.passcode.clone(),
            expires_at: rec.expires_at,
            files: n,
            attachments,
            left_out: left.total(),
            left_out_note: left_out_note(left.too_large, left.link_full, left.no_place),
            warning: link_warning(&rec.expires_at.to_string()),
        };
        self.links.push(rec);
        Ok(out)
    }

    /// The links of `share_id` (every share's when `None`), newest last.
    pub fn links(&self, share_id: Option<&ShareId>) -> Vec<LinkView> {
        let t = now();
        self.links
            .iter()
            .filter(|l| share_id.is_none_or(|s| l.share == s.to_bytes()))
            .map(|l| l.view(t))
            .collect()
    }

    /// Deletes link `id` at the relay (its manifest answers 404 from now on; copies already
    /// downloaded stay readable by whoever has the key) and forgets it.
    pub async fn delete_link(&mut self, id: &str) -> Result<()> {
        let pos = self
            .links
            .iter()
            .position(|l| l.id == id)
            .ok_or(ClientError::InvalidInput("unknown link"))?;
        let share = ShareId(self.links[pos].share);
        let st = self
            .shares
            .get_mut(&share)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        match self.relay.delete_link(&mut st.owner, &share, id).await {
            // Already gone at the relay (expired and swept, or died of failed attempts).
            Ok(()) | Err(ClientError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.links.remove(pos);
        Ok(())
    }

    /// Saves the links into `vault` as their own sealed record ([`LINKS_RECORD`]), apart from
    /// the main patient state.
    pub fn save_links_to(&self, vault: &mut Vault) -> Result<()> {
        let file = LinksFile {
            version: LINKS_RECORD_VERSION,
            links: self.links.clone(),
        };
        let bytes = Zeroizing::new(
            serde_json::to_vec(&file).map_err(|_| ClientError::InvalidInput("links"))?,
        );
        vault.put_state(LINKS_RECORD, &bytes)?;
        Ok(())
    }

    /// Loads the links saved by [`Patient::save_links_to`] (none saved: none).
    pub fn load_links_from(&mut self, vault: &mut Vault) -> Result<()> {
        let Some(bytes) = vault.get_state(LINKS_RECORD)? else {
            return Ok(());
        };
        let file: LinksFile = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::InvalidInput("the saved links are unreadable"))?;
        if file.version != LINKS_RECORD_VERSION {
            return Err(ClientError::InvalidInput(
                "the saved links are of an unknown version",
            ));
        }
        self.links = file.links;
        Ok(())
    }
}

/// A verified audit entry of kind [`AUDIT_KIND_LINK_REQUESTED`], as the session keeps it.
pub(super) fn logged_request(seq: u64, time: u64, body: &[u8]) -> LoggedEvent {
    let (outcome, recipient) = match body.split_first() {
        Some((0, r)) => (SERVED, r),
        Some((_, r)) => (WRONG_PASSCODE, r),
        None => (WRONG_PASSCODE, &[][..]),
    };
    // The relay capped it; shown as text whatever it is.
    let recipient: String = String::from_utf8_lossy(recipient)
        .chars()
        .filter(|c| !c.is_control())
        .take(api::SHL_RECIPIENT_LOGGED_MAX)
        .collect();
    LoggedEvent {
        seq,
        time,
        kind: AUDIT_KIND_LINK_REQUESTED,
        reader: None,
        nonce: None,
        objects: vec![outcome.to_owned(), recipient],
        warnings: Vec::new(),
    }
}

/// "`<recipient>` downloaded the link at `<time>`": the line of the access log.
pub(super) fn access_event(e: &LoggedEvent) -> AccessEvent {
    let who = e
        .objects
        .get(1)
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| "someone (no name given)".to_owned());
    AccessEvent {
        time: e.time,
        who,
        what: AccessKind::LinkDownloaded {
            served: e.objects.first().is_some_and(|o| o == SERVED),
        },
        warnings: e.warnings.clone(),
    }
}

impl AccessEvent {
    /// The sentence the access log shows, `time` formatted by the caller: "`<recipient>`
    /// downloaded the link at 10:32" (or "tried a wrong passcode for the link").
    pub fn sentence(&self, time: &str) -> String {
        match &self.what {
            AccessKind::LinkDownloaded { served: true } => {
                format!("{} downloaded the link at {time}", self.who)
            }
            AccessKind::LinkDownloaded { served: false } => {
                format!("{} tried a wrong passcode for the link at {time}", self.who)
            }
            AccessKind::Fetched { objects } => {
                format!("{} fetched {} objects at {time}", self.who, objects.len())
            }
            AccessKind::Relay(k) => format!("relay event {k} at {time}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_is_the_issue_text() {
        assert_eq!(
            link_warning("1 March"),
            "Anyone with this code and passcode can read these records until 1 March. We cannot tell who opened it. Deleting it stops new downloads, not copies."
        );
    }

    #[test]
    fn debug_hides_link_and_passcode() {
        let l = PublishedLink {
            id: "ab".into(),
            shlink: "shlink:/SECRET".into(),
            passcode: Some("12345678".into()),
            expires_at: 1,
            files: 1,
            attachments: 0,
            left_out: 0,
            left_out_note: None,
            warning: String::new(),
        };
        let d = format!("{l:?} {:?}", LinkPasscode::Chosen("hunter2".into()));
        assert!(!d.contains("SECRET") && !d.contains("12345678") && !d.contains("hunter2"));
    }

    const DOC: &[u8] = br#"{"resourceType":"DocumentReference","id":"d","content":[{"attachment":{"contentType":"application/pdf"}}]}"#;

    #[test]
    fn attachments_go_inline_within_the_caps() {
        let small = vec![b'%'; 1000];
        let big = vec![0u8; MAX_LINK_ATTACHMENT_BYTES + 1];
        let fits = vec![1u8; MAX_LINK_ATTACHMENT_BYTES - 4096];
        let half = vec![2u8; 1_500_000];
        let rec = |atts: Vec<&'static [u8]>| LinkRecordIn {
            data: DOC,
            attachments: atts,
        };
        // Leaked so the records may borrow them for the test's length.
        let (small, big, fits, half): (&[u8], &[u8], &[u8], &[u8]) =
            (small.leak(), big.leak(), fits.leak(), half.leak());
        let recs = vec![
            rec(vec![small]),
            rec(vec![big]),
            // The first file has a place in the record, the second none.
            rec(vec![half, small]),
            rec(vec![half]),
            // About 8 MB of JWE with the two before: over the link's 7.3 MB.
            rec(vec![half]),
            rec(vec![fits]),
        ];
        let (files, left) = plan_files(&recs);
        assert_eq!(files.len(), 6);
        let inlined: Vec<usize> = files.iter().map(|f| f.records[0].1.len()).collect();
        assert_eq!(inlined, vec![1, 0, 1, 1, 0, 0]);
        assert_eq!(
            left,
            LeftOut {
                too_large: 1,
                link_full: 2,
                no_place: 1
            }
        );
        // The largest attachment the note names fits a file of its own.
        let alone = [rec(vec![fits])];
        let (one, left) = plan_files(&alone);
        assert_eq!((one[0].records[0].1.len(), left.total()), (1, 0));
        // What was planned fits once encrypted, whatever DEFLATE does.
        let key = ShlKey::generate();
        let mut total = 0;
        for f in &files {
            let plain = file_plaintext(f).expect("plaintext");
            let j = jwe::encrypt(
                &plain,
                &key,
                &EncryptOptions {
                    cty: Some("application/fhir+json"),
                    zip: true,
                },
            )
            .expect("jwe");
            assert!(j.len() <= api::MAX_SHL_FILE_BYTES);
            total += j.len();
        }
        assert!(total <= api::MAX_SHL_LINK_BYTES);
        let first: serde_json::Value =
            serde_json::from_slice(&file_plaintext(&files[0]).expect("plain")).expect("json");
        let att = &first["content"][0]["attachment"];
        assert_eq!(att["size"], 1000);
        assert_eq!(att["hash"], fhir::attachment_hash(small));
        // A record without attachments keeps the share's bytes.
        let plain_rec = [LinkRecordIn {
            data: DOC,
            attachments: Vec::new(),
        }];
        let (files, _) = plan_files(&plain_rec);
        assert_eq!(file_plaintext(&files[0]).expect("plain").as_slice(), DOC);
    }

    #[test]
    fn the_left_out_note_counts_and_says_why() {
        assert_eq!(left_out_note(0, 0, 0), None);
        assert_eq!(
            left_out_note(1, 0, 0).as_deref(),
            Some(
                "1 attached file was left out: 1 is larger than the 2.4 MB one file of a link holds."
            )
        );
        assert_eq!(
            left_out_note(2, 1, 0).as_deref(),
            Some(
                "3 attached files were left out: 2 are larger than the 2.4 MB one file of a link holds; 1 did not fit in the 7.3 MB a link holds."
            )
        );
    }

    #[test]
    fn generated_passcodes_are_digits() {
        let p = generated_passcode();
        assert_eq!(p.len(), GENERATED_PASSCODE_DIGITS);
        assert!(p.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(p, generated_passcode());
    }

    #[test]
    fn logged_requests_read_back() {
        let e = logged_request(1, 7, b"\x00Dr. B");
        let a = access_event(&e);
        assert_eq!(a.who, "Dr. B");
        assert_eq!(a.sentence("10:32"), "Dr. B downloaded the link at 10:32");
        let w = access_event(&logged_request(2, 7, b"\x01\x07"));
        assert_eq!(w.what, AccessKind::LinkDownloaded { served: false });
        assert_eq!(w.who, "someone (no name given)");
    }
}
