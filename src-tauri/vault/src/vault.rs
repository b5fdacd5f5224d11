//! The vault: lifecycle, records, attachments, import/export, search, audit, backup.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carekey_core::audit::{self, ChainKind, Entry, Head};
use carekey_core::envelope::{
    self, ChunkHeader, ChunkOpener, ChunkSealer, Context, DEFAULT_CHUNK_SIZE, Envelope, ObjectKind,
};
use carekey_core::keys::{Card, ContentKey, PublicKey, Role, RootSecret, SigningSecret};
use carekey_core::label;
use carekey_core::wire::Wire;
use rand_core::{OsRng, RngCore};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::crypto::{KdfHeader, KdfParams, RecoveryPhrase, VaultKeys, unwrap_root, wrap_root};
use crate::error::{Result, VaultError};
use crate::fhir::{self, Item, NdjsonFile};
use crate::schema;
use crate::types::*;

const FORMAT: u32 = 1;

/// Options of [`Vault::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Argon2id cost (default: 64 MiB, t = 3, p = 1).
    pub kdf: KdfParams,
}

struct IndexEntry {
    summary: RecordSummary,
    hay: String,
}

impl Drop for IndexEntry {
    /// The search text holds every searchable word of the record: wipe it when the index is
    /// dropped (lock, idle eviction, writes).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.hay);
        zeroize::Zeroize::zeroize(&mut self.summary.title);
    }
}

struct Unlocked {
    keys: VaultKeys,
    index: Option<(Vec<IndexEntry>, Vec<RecordId>)>,
}

/// An open vault file; locked until [`Vault::unlock`].
pub struct Vault {
    conn: Connection,
    path: PathBuf,
    vault_id: [u8; 16],
    kdf: KdfHeader,
    state: Option<Unlocked>,
    idle_timeout: Option<Duration>,
    last_used: Instant,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("unlocked", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

/// Stored provenance (inside the sealed body).
#[derive(Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "snake_case")]
enum StoredProv {
    Device { sig: String },
    Card { card: String, sig: String },
    None,
}

#[derive(Serialize, Deserialize)]
struct StoredBody {
    resource: Value,
    prov: StoredProv,
}

#[derive(Serialize, Deserialize)]
struct AttachmentMeta {
    record: RecordId,
    slot: u32,
    content_type: Option<String>,
    title: Option<String>,
    size: u64,
    root: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()
}

fn tagged(tag: u8, id: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + id.len());
    v.push(tag);
    v.extend_from_slice(id);
    v
}

// AEAD ids: one tag byte per field, so no value can be moved to another field or row.
const T_REC_KEY: u8 = b'k';
const T_REC_SUMMARY: u8 = b's';
const T_REC_BODY: u8 = b'b';
const T_ATT_KEY: u8 = b'K';
const T_ATT_META: u8 = b'M';
const T_SOURCE: u8 = b'S';
const T_AUDIT: u8 = b'A';
const T_STATE: u8 = b'P';

/// The bytes a record signature covers (with label `RECORD_SIG`): the resource's canonical
/// JSON (serde_json serialization of the parsed value, attachments inlined).
pub fn record_signing_bytes(resource: &Value) -> Vec<u8> {
    serde_json::to_vec(resource).unwrap_or_default()
}

/// Verifies an author's signature over a resource.
pub fn verify_record_signature(resource: &Value, author: &Card, sig: &[u8; 64]) -> Result<()> {
    author.verify().map_err(|_| VaultError::BadSignature)?;
    author
        .body
        .signing_key
        .verify(
            label::RECORD_SIG,
            &record_signing_bytes(resource),
            sig,
            "record",
        )
        .map_err(|_| VaultError::BadSignature)
}

fn seal_bytes<K: envelope::SealingKey>(k: &K, kind: ObjectKind, id: &[u8], pt: &[u8]) -> Vec<u8> {
    envelope::seal(k, &Context::new(kind, id, 0), pt, &mut OsRng).to_bytes()
}

fn open_bytes<K: envelope::SealingKey>(
    k: &K,
    kind: ObjectKind,
    id: &[u8],
    blob: &[u8],
) -> carekey_core::Result<Zeroizing<Vec<u8>>> {
    let env = Envelope::from_bytes(blob)?;
    envelope::open(k, &Context::new(kind, id, 0), &env)
}

fn tampered(what: &'static str, id: &[u8]) -> VaultError {
    VaultError::Tampered { what, id: hex(id) }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    // Imports commit durably to the WAL (fsync at commit); copying the WAL back into the main
    // file is deferred to `lock()`/`checkpoint()`/close, or done once the WAL passes ~64 MiB.
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(())
}

fn header_get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row("SELECT value FROM header WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

fn header_put(conn: &Connection, key: &str, value: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO header(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn require(conn: &Connection, key: &'static str) -> Result<Vec<u8>> {
    header_get(conn, key)?.ok_or(VaultError::BadHeader(key))
}

impl Vault {
    // ------------------------------------------------------------------ lifecycle

    /// Creates a new vault at `path` (which must not exist) with a fresh root secret; returns
    /// it unlocked, with the recovery phrase to show the user once.
    pub fn create(
        path: &Path,
        passphrase: &str,
        opts: &CreateOptions,
    ) -> Result<(Vault, RecoveryPhrase)> {
        let root = RootSecret::random(&mut OsRng);
        let phrase = RecoveryPhrase::from_root(&root);
        let v = Self::create_with_root(path, passphrase, root, opts)?;
        Ok((v, phrase))
    }

    /// Creates a new, empty vault for an existing root secret (a restored identity).
    pub fn create_with_root(
        path: &Path,
        passphrase: &str,
        root: RootSecret,
        opts: &CreateOptions,
    ) -> Result<Vault> {
        if passphrase.is_empty() {
            return Err(VaultError::InvalidArgument("passphrase is empty"));
        }
        if path.exists() {
            return Err(VaultError::InvalidArgument(
                "a file already exists at the vault path",
            ));
        }
        let kdf = KdfHeader::new(opts.kdf)?;
        let kek = kdf.passphrase_key(passphrase)?;
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        schema::migrate(&mut conn)?;
        let mut vault_id = [0u8; 16];
        OsRng.fill_bytes(&mut vault_id);
        let keys = VaultKeys::from_root(root);
        {
            let tx = conn.transaction()?;
            header_put(&tx, "format", &FORMAT.to_be_bytes())?;
            header_put(&tx, "vault_id", &vault_id)?;
            header_put(&tx, "kdf", &kdf.to_bytes())?;
            header_put(
                &tx,
                "wrapped_root",
                &wrap_root(&kek, &vault_id, &keys.root).to_bytes(),
            )?;
            header_put(&tx, "check", &keys.check_value(&vault_id).to_bytes())?;
            audit_append(&tx, &keys, &vault_id, &AuditEvent::Created)?;
            tx.commit()?;
        }
        Ok(Vault {
            conn,
            path: path.to_owned(),
            vault_id,
            kdf,
            state: Some(Unlocked { keys, index: None }),
            idle_timeout: None,
            last_used: Instant::now(),
        })
    }

    /// Opens an existing vault file, locked. Fails on a newer schema or a damaged header;
    /// applies pending migrations of older schemas.
    pub fn open(path: &Path) -> Result<Vault> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        schema::check_and_migrate(&mut conn)?;
        let fmt = require(&conn, "format")?;
        if fmt.as_slice() != FORMAT.to_be_bytes() {
            return Err(VaultError::BadHeader("unknown vault format"));
        }
        let vault_id: [u8; 16] = require(&conn, "vault_id")?
            .try_into()
            .map_err(|_| VaultError::BadHeader("vault_id"))?;
        let kdf = KdfHeader::from_bytes(&require(&conn, "kdf")?)?;
        Ok(Vault {
            conn,
            path: path.to_owned(),
            vault_id,
            kdf,
            state: None,
            idle_timeout: None,
            last_used: Instant::now(),
        })
    }

    /// Unlocks with the passphrase (Argon2id with the parameters in the header).
    pub fn unlock(&mut self, passphrase: &str) -> Result<()> {
        let kek = self.kdf.passphrase_key(passphrase)?;
        let wrapped = Envelope::from_bytes(&require(&self.conn, "wrapped_root")?)?;
        let root = unwrap_root(&kek, &self.vault_id, &wrapped)?;
        let keys = VaultKeys::from_root(root);
        let check = Envelope::from_bytes(&require(&self.conn, "check")?)?;
        if !keys.verify_check(&self.vault_id, &check) {
            return Err(VaultError::BadHeader("key check value"));
        }
        self.state = Some(Unlocked { keys, index: None });
        self.last_used = Instant::now();
        Ok(())
    }

    /// Unlocks with the recovery phrase (forgotten passphrase) and sets a new passphrase.
    pub fn unlock_with_phrase(&mut self, phrase: &str, new_passphrase: &str) -> Result<()> {
        let root = RecoveryPhrase::parse(phrase)?.root()?;
        let keys = VaultKeys::from_root(root);
        let check = Envelope::from_bytes(&require(&self.conn, "check")?)?;
        if !keys.verify_check(&self.vault_id, &check) {
            return Err(VaultError::WrongPhrase);
        }
        self.state = Some(Unlocked { keys, index: None });
        self.last_used = Instant::now();
        self.rewrap(new_passphrase, self.kdf.params, false)
    }

    /// Locks: every key is dropped and zeroized, the search index is discarded, and the WAL
    /// is checkpointed into the main file.
    pub fn lock(&mut self) {
        self.state = None;
        let _ = self.checkpoint();
    }

    /// Copies the write-ahead log into the main file and truncates it (the app may call this
    /// when idle; `lock()` and closing do it too).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Whether the vault is unlocked (also applies the idle timeout).
    pub fn is_unlocked(&mut self) -> bool {
        self.tick();
        self.state.is_some()
    }

    /// Sets the idle timeout (`None`: never). Any operation after the timeout finds the vault
    /// locked; the app should also call [`Vault::tick`] from a timer so keys leave memory on
    /// time even without user activity.
    pub fn set_idle_timeout(&mut self, t: Option<Duration>) {
        self.idle_timeout = t;
    }

    /// Evicts the keys if the idle timeout has passed. Returns whether the vault is locked.
    pub fn tick(&mut self) -> bool {
        if let Some(t) = self.idle_timeout
            && self.last_used.elapsed() >= t
        {
            self.state = None;
        }
        self.state.is_none()
    }

    fn touch(&mut self) -> Result<()> {
        if self.tick() {
            return Err(VaultError::Locked);
        }
        self.last_used = Instant::now();
        Ok(())
    }

    /// Changes the passphrase (and optionally raises the Argon2id cost): only the root secret
    /// is re-wrapped; records are not re-encrypted.
    pub fn change_passphrase(
        &mut self,
        old: &str,
        new: &str,
        params: Option<KdfParams>,
    ) -> Result<()> {
        self.touch()?;
        let kek = self.kdf.passphrase_key(old)?;
        let wrapped = Envelope::from_bytes(&require(&self.conn, "wrapped_root")?)?;
        unwrap_root(&kek, &self.vault_id, &wrapped)?;
        self.rewrap(new, params.unwrap_or(self.kdf.params), true)
    }

    fn rewrap(&mut self, new: &str, params: KdfParams, log: bool) -> Result<()> {
        if new.is_empty() {
            return Err(VaultError::InvalidArgument("passphrase is empty"));
        }
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let kdf = KdfHeader::new(params)?;
        let kek = kdf.passphrase_key(new)?;
        let tx = self.conn.transaction()?;
        header_put(&tx, "kdf", &kdf.to_bytes())?;
        header_put(
            &tx,
            "wrapped_root",
            &wrap_root(&kek, &self.vault_id, &st.keys.root).to_bytes(),
        )?;
        if log {
            audit_append(
                &tx,
                &st.keys,
                &self.vault_id,
                &AuditEvent::PassphraseChanged,
            )?;
        }
        tx.commit()?;
        self.kdf = kdf;
        Ok(())
    }

    /// Current Argon2id parameters.
    pub fn kdf_params(&self) -> KdfParams {
        self.kdf.params
    }

    /// The recovery phrase (24 words) of this vault's root secret.
    pub fn recovery_phrase(&mut self) -> Result<RecoveryPhrase> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        Ok(RecoveryPhrase::from_root(&st.keys.root))
    }

    /// This device's signing public key (derived from the root).
    pub fn signing_public(&mut self) -> Result<PublicKey> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        Ok(st.keys.identity.signing_public())
    }

    /// Makes this device's signed card.
    pub fn device_card(&mut self, name: &str, role: Role, licence: Option<&str>) -> Result<Card> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        Ok(st.keys.identity.card(name, role, licence, now_secs())?)
    }

    /// Signs a resource as its author (doctor notes): verify with [`verify_record_signature`].
    pub fn sign_record(&mut self, resource: &Value) -> Result<[u8; 64]> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        Ok(st
            .keys
            .identity
            .signing()
            .sign(label::RECORD_SIG, &record_signing_bytes(resource)))
    }

    /// The owner (write-capability) key of this vault's backup object on the relay, for key
    /// generation `generation` (`KDF_BACKUP_OWNER`): the client signs backup uploads with it.
    pub fn backup_owner_key(&mut self, generation: u32) -> Result<SigningSecret> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let seed = st.keys.root.derive(label::KDF_BACKUP_OWNER, generation);
        Ok(SigningSecret::from_seed(seed.expose_secret()))
    }

    /// The vault file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    // ------------------------------------------------------------------ records

    /// Adds (or replaces, same type and id) a record entered on this device, signed by the
    /// device key. A resource without `id` gets a random one.
    pub fn add_record(&mut self, resource: Value) -> Result<RecordId> {
        fhir::check_resource(&resource).map_err(VaultError::InvalidArgument)?;
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        let (id, _, _) = put_record(&tx, &st.keys, resource, Prov::Device)?;
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::RecordAdded { record: id },
        )?;
        tx.commit()?;
        st.index = None;
        Ok(id)
    }

    /// Accepts a resource signed by `author` (a doctor's note); the signature is verified and
    /// kept as provenance.
    pub fn accept_signed_record(
        &mut self,
        resource: Value,
        author: &Card,
        signature: &[u8; 64],
    ) -> Result<RecordId> {
        fhir::check_resource(&resource).map_err(VaultError::InvalidArgument)?;
        verify_record_signature(&resource, author, signature)?;
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        let (id, _, _) = put_record(
            &tx,
            &st.keys,
            resource,
            Prov::Card(Box::new(author.clone()), *signature),
        )?;
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::NoteAccepted {
                record: id,
                author: author.body.name.clone(),
            },
        )?;
        tx.commit()?;
        st.index = None;
        Ok(id)
    }

    /// Reads one record with its resource (attachments inlined again).
    pub fn get_record(&mut self, id: &RecordId) -> Result<Record> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        read_record(&self.conn, &st.keys, id)
    }

    /// Re-verifies a record's signature now.
    pub fn verify_record(&mut self, id: &RecordId) -> Result<SignatureStatus> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (_, status) = read_full(&self.conn, &st.keys, id)?;
        Ok(status)
    }

    /// Deletes a record and its attachments (freed pages are zeroed: secure_delete).
    pub fn delete_record(&mut self, id: &RecordId) -> Result<()> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM records WHERE id = ?1", [&id.0[..]])?;
        if n == 0 {
            return Err(VaultError::NotFound { what: "record" });
        }
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::RecordDeleted { record: *id },
        )?;
        tx.commit()?;
        st.index = None;
        Ok(())
    }

    /// Number of record rows (readable or not).
    pub fn record_count(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn ensure_index(&mut self) -> Result<&(Vec<IndexEntry>, Vec<RecordId>)> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        if st.index.is_none() {
            st.index = Some(build_index(&self.conn, &st.keys)?);
        }
        st.index.as_ref().ok_or(VaultError::Locked)
    }

    /// Every record's summary (newest first) and the ids of damaged rows.
    pub fn list(&mut self) -> Result<Listing> {
        let (idx, damaged) = self.ensure_index()?;
        Ok(Listing {
            records: idx.iter().map(|e| e.summary.clone()).collect(),
            damaged: damaged.clone(),
        })
    }

    /// Full-text search over titles, codes, displays, values and authors: every
    /// whitespace-separated term must occur (case-insensitive). Runs in memory over the
    /// decrypted summaries (built once after unlock, dropped on lock).
    pub fn search(&mut self, query: &str, limit: usize) -> Result<Vec<RecordSummary>> {
        let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let (idx, _) = self.ensure_index()?;
        Ok(idx
            .iter()
            .filter(|e| terms.iter().all(|t| e.hay.contains(t.as_str())))
            .take(limit)
            .map(|e| e.summary.clone())
            .collect())
    }

    /// Records of one FHIR resource type, through the blind index.
    pub fn find_by_type(&mut self, fhir_type: &str) -> Result<Vec<RecordSummary>> {
        self.find_term(&format!("type:{fhir_type}"))
    }

    /// Records carrying a code, through the blind index.
    pub fn find_by_code(&mut self, system: &str, code: &str) -> Result<Vec<RecordSummary>> {
        self.find_term(&format!("code:{system}|{code}"))
    }

    fn find_term(&mut self, term: &str) -> Result<Vec<RecordSummary>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let t = st.keys.bi_terms.mac(term.as_bytes());
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM terms WHERE term = ?1")?;
        let ids: Vec<Vec<u8>> = stmt
            .query_map([&t[..]], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let rid = RecordId(id.try_into().map_err(|_| VaultError::BadHeader("terms"))?);
            out.push(read_summary(&self.conn, &st.keys, &rid)?);
        }
        Ok(out)
    }

    /// The plaintext of an attachment (id from [`AttachmentInfo::id`]).
    pub fn attachment(&mut self, id: &str) -> Result<Zeroizing<Vec<u8>>> {
        let aid = unhex(id).ok_or(VaultError::NotFound { what: "attachment" })?;
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (_, data) = read_attachment(&self.conn, &st.keys, &aid)?;
        Ok(data)
    }

    // ------------------------------------------------------------------ import / export

    /// Imports a FHIR Bundle in one transaction: all entries or none.
    pub fn import_bundle(
        &mut self,
        json: &[u8],
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        let items = fhir::parse_bundle(json)?;
        self.import_items(items, opts, ctl)
    }

    /// Imports FHIR bulk NDJSON files in one transaction: all lines of all files or none.
    pub fn import_ndjson(
        &mut self,
        files: &[NdjsonFile],
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        let mut items = Vec::new();
        for f in files {
            items.extend(fhir::parse_ndjson(&f.name, &f.data)?);
        }
        self.import_items(items, opts, ctl)
    }

    fn import_items(
        &mut self,
        items: Vec<Item>,
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let source_label = opts.source.clone().unwrap_or_else(|| "import".to_owned());
        let tx = self.conn.transaction()?;
        let share = match &opts.share {
            Some(s) => Some(register_source(&tx, &st.keys, s)?),
            None => None,
        };
        let total = items.len();
        let mut report = ImportReport::default();
        for (i, item) in items.into_iter().enumerate() {
            if ctl.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(VaultError::Cancelled);
            }
            if i % 64 == 0
                && let Some(p) = ctl.progress.as_mut()
            {
                p(Progress { done: i, total });
            }
            let ty = item
                .resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let prov = match &share {
                Some((tag, s)) => Prov::Shared(*tag, s.clone()),
                None => Prov::Imported(source_label.clone()),
            };
            let (_, replaced, atts) =
                put_record(&tx, &st.keys, item.resource, prov).map_err(|e| match e {
                    VaultError::InvalidArgument(r) => VaultError::Import {
                        at: item.at.clone(),
                        reason: r.to_owned(),
                    },
                    other => other,
                })?;
            report.records += 1;
            report.replaced += usize::from(replaced);
            report.attachments += atts;
            *report.by_type.entry(ty).or_default() += 1;
        }
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::Imported {
                source: source_label,
                records: report.records,
            },
        )?;
        tx.commit()?;
        st.index = None;
        if let Some(p) = ctl.progress.as_mut() {
            p(Progress { done: total, total });
        }
        Ok(report)
    }

    /// Exports all records (or the chosen ones) as a FHIR `collection` Bundle (JSON bytes).
    pub fn export_bundle(&mut self, ids: Option<&[RecordId]>) -> Result<Vec<u8>> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let ids: Vec<RecordId> = match ids {
            Some(ids) => ids.to_vec(),
            None => all_ids(&self.conn)?,
        };
        let mut resources = Vec::with_capacity(ids.len());
        for id in &ids {
            resources.push(read_record(&self.conn, &st.keys, id)?.resource);
        }
        let bundle = fhir::make_bundle(resources);
        let tx = self.conn.transaction()?;
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::Exported { records: ids.len() },
        )?;
        tx.commit()?;
        serde_json::to_vec_pretty(&bundle)
            .map_err(|_| VaultError::InvalidArgument("bundle could not be encoded"))
    }

    // ------------------------------------------------------------------ shares (doctor app)

    /// Removes every record received through a share (revoked or expired), logging `reason`.
    /// Returns how many.
    pub fn purge_source(&mut self, share_id: &[u8; 16], reason: PurgeReason) -> Result<usize> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_sources.mac(share_id);
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM records WHERE source = ?1", [&tag[..]])?;
        tx.execute("DELETE FROM sources WHERE tag = ?1", [&tag[..]])?;
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::Purged {
                share_id: hex(share_id),
                records: n,
                reason,
            },
        )?;
        tx.commit()?;
        st.index = None;
        Ok(n)
    }

    /// Purges every share whose expiry is at or before `now` (Unix seconds). Returns how many
    /// records were removed.
    pub fn purge_expired(&mut self, now: u64) -> Result<usize> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let mut stmt = self.conn.prepare("SELECT tag, value FROM sources")?;
        let rows: Vec<(Vec<u8>, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        let mut expired = Vec::new();
        for (tag, value) in rows {
            let pt = open_bytes(
                &st.keys.vault,
                ObjectKind::VaultValue,
                &tagged(T_SOURCE, &tag),
                &value,
            )
            .map_err(|_| tampered("share source", &tag))?;
            let s: ShareSource =
                serde_json::from_slice(&pt).map_err(|_| tampered("share source", &tag))?;
            if s.expires_at <= now {
                expired.push(s.share_id);
            }
        }
        let mut n = 0;
        for id in expired {
            n += self.purge_source(&id, PurgeReason::Expired)?;
        }
        Ok(n)
    }

    // ------------------------------------------------------------------ app state

    /// Stores the app's state value `name` (shares, grants, relationships, pins), replacing
    /// the previous one, in one durable transaction. `name` is MAC-hashed; `value` is sealed.
    pub fn put_state(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_state.mac(name.as_bytes());
        let sealed = seal_bytes(
            &st.keys.vault,
            ObjectKind::VaultValue,
            &tagged(T_STATE, &tag),
            value,
        );
        self.conn.execute(
            "INSERT INTO app_state(tag, value) VALUES (?1, ?2)
             ON CONFLICT(tag) DO UPDATE SET value = excluded.value",
            params![&tag[..], sealed],
        )?;
        Ok(())
    }

    /// The app's state value `name`, if stored. A value that does not open under this
    /// name is reported as tampered.
    pub fn get_state(&mut self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_state.mac(name.as_bytes());
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM app_state WHERE tag = ?1",
                [&tag[..]],
                |r| r.get(0),
            )
            .optional()?;
        blob.map(|b| {
            open_bytes(
                &st.keys.vault,
                ObjectKind::VaultValue,
                &tagged(T_STATE, &tag),
                &b,
            )
            .map_err(|_| tampered("app state", &tag))
        })
        .transpose()
    }

    /// Deletes the app's state value `name` (no error if absent).
    pub fn delete_state(&mut self, name: &str) -> Result<()> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_state.mac(name.as_bytes());
        self.conn
            .execute("DELETE FROM app_state WHERE tag = ?1", [&tag[..]])?;
        Ok(())
    }

    // ------------------------------------------------------------------ audit

    /// Appends an event to the local audit chain (the client logs shares and revocations).
    pub fn log_event(&mut self, event: &AuditEvent) -> Result<()> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        audit_append(&tx, &st.keys, &self.vault_id, event)?;
        tx.commit()?;
        Ok(())
    }

    /// Verifies the whole local chain and its signed head; names the first bad entry.
    pub fn verify_audit(&mut self) -> Result<Head> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (head, _) = load_audit(&self.conn, &st.keys, &self.vault_id)?;
        Ok(head)
    }

    /// The decrypted audit log (verified first).
    pub fn audit_log(&mut self) -> Result<Vec<AuditRecord>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (_, recs) = load_audit(&self.conn, &st.keys, &self.vault_id)?;
        Ok(recs)
    }

    // ------------------------------------------------------------------ backup

    /// Makes a backup blob of the whole vault (sealed under the root-derived backup key of
    /// key generation 0); its version is one above the previous backup's.
    pub fn backup(&mut self) -> Result<Backup> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let prev = header_get(&self.conn, "backup_version")?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        let version = prev + 1;
        {
            let tx = self.conn.transaction()?;
            header_put(&tx, "backup_version", &version.to_be_bytes())?;
            audit_append(
                &tx,
                &st.keys,
                &self.vault_id,
                &AuditEvent::BackupMade { version },
            )?;
            tx.commit()?;
        }
        let mut rnd = [0u8; 8];
        OsRng.fill_bytes(&mut rnd);
        let tmp = self
            .path
            .with_file_name(format!(".carekey-backup-{}.tmp", hex(&rnd)));
        let tmp_str = tmp
            .to_str()
            .ok_or(VaultError::InvalidArgument("vault path is not UTF-8"))?;
        self.conn.execute("VACUUM INTO ?1", [tmp_str])?;
        let snapshot = std::fs::read(&tmp);
        let _ = std::fs::remove_file(&tmp);
        let snapshot = Zeroizing::new(snapshot?);
        let blob = crate::backup::seal(&st.keys.root, 0, version, now_secs(), &snapshot);
        Ok(Backup {
            version,
            id: crate::backup::backup_id(&st.keys.root, 0),
            blob,
        })
    }

    /// Restores a backup on a fresh device: the phrase gives the root (identity and keys), the
    /// blob the vault; `min_version` is the newest backup/share state the relay reports, and an
    /// older blob is refused (no rollback). The new vault at `path` is protected by
    /// `new_passphrase` and returned unlocked.
    pub fn restore_backup(
        path: &Path,
        phrase: &str,
        blob: &[u8],
        min_version: u64,
        new_passphrase: &str,
        opts: &CreateOptions,
    ) -> Result<Vault> {
        if path.exists() {
            return Err(VaultError::InvalidArgument(
                "a file already exists at the vault path",
            ));
        }
        let root = RecoveryPhrase::parse(phrase)?.root()?;
        let (version, snapshot) = crate::backup::open(&root, blob, min_version)?;
        let mut rnd = [0u8; 8];
        OsRng.fill_bytes(&mut rnd);
        let tmp = path.with_file_name(format!(".carekey-restore-{}.tmp", hex(&rnd)));
        std::fs::write(&tmp, &*snapshot)?;
        let mut v = match Vault::open(&tmp) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let keys = VaultKeys::from_root(root);
        let check = Envelope::from_bytes(&require(&v.conn, "check")?)?;
        if !keys.verify_check(&v.vault_id, &check) {
            drop(v);
            let _ = std::fs::remove_file(&tmp);
            return Err(VaultError::WrongPhrase);
        }
        v.state = Some(Unlocked { keys, index: None });
        v.rewrap(new_passphrase, opts.kdf, false)?;
        v.log_event(&AuditEvent::Restored { version })?;
        v.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        drop(v);
        std::fs::rename(&tmp, path)?;
        let mut v = Vault::open(path)?;
        v.unlock(new_passphrase)?;
        Ok(v)
    }
}

// ---------------------------------------------------------------------- row helpers

enum Prov {
    Device,
    Card(Box<Card>, [u8; 64]),
    Imported(String),
    Shared([u8; 32], ShareSource),
}

fn register_source(
    tx: &Transaction<'_>,
    keys: &VaultKeys,
    s: &ShareSource,
) -> Result<([u8; 32], ShareSource)> {
    let tag = keys.bi_sources.mac(&s.share_id);
    let pt = Zeroizing::new(
        serde_json::to_vec(s).map_err(|_| VaultError::InvalidArgument("share source"))?,
    );
    let value = seal_bytes(
        &keys.vault,
        ObjectKind::VaultValue,
        &tagged(T_SOURCE, &tag),
        &pt,
    );
    tx.execute(
        "INSERT INTO sources(tag, value) VALUES (?1, ?2)
         ON CONFLICT(tag) DO UPDATE SET value = excluded.value",
        params![&tag[..], value],
    )?;
    Ok((tag, s.clone()))
}

/// Stores one resource; returns (id, replaced, attachments).
fn put_record(
    tx: &Transaction<'_>,
    keys: &VaultKeys,
    mut resource: Value,
    prov: Prov,
) -> Result<(RecordId, bool, usize)> {
    fhir::check_resource(&resource).map_err(VaultError::InvalidArgument)?;
    if resource.get("id").and_then(Value::as_str).is_none() {
        let mut r = [0u8; 16];
        OsRng.fill_bytes(&mut r);
        if let Some(o) = resource.as_object_mut() {
            o.insert("id".into(), Value::String(hex(&r)));
        }
    }
    // Records received through a share are namespaced by the share, so two patients'
    // `Patient/1` never collide in a doctor's vault.
    let namespace = match &prov {
        Prov::Shared(tag, _) => format!("share:{}/", hex(tag)),
        _ => String::new(),
    };
    let rid = RecordId(
        keys.bi_records.mac(
            format!(
                "{namespace}{}/{}",
                resource["resourceType"].as_str().unwrap_or(""),
                resource["id"].as_str().unwrap_or("")
            )
            .as_bytes(),
        ),
    );
    // Signature over the complete resource, before attachments are taken out.
    let (stored_prov, origin, signature, card_name, source_tag) = match prov {
        Prov::Device => {
            let sig = keys
                .identity
                .signing()
                .sign(label::RECORD_SIG, &record_signing_bytes(&resource));
            (
                StoredProv::Device { sig: hex(&sig) },
                Origin::SelfEntered,
                SignatureStatus::Valid {
                    signer: "this device".into(),
                    card_hash: String::new(),
                },
                None,
                None,
            )
        }
        Prov::Card(card, sig) => (
            StoredProv::Card {
                card: hex(&card.to_bytes()),
                sig: hex(&sig),
            },
            Origin::Received,
            SignatureStatus::Valid {
                signer: card.body.name.clone(),
                card_hash: hex(&card.hash()),
            },
            Some(card.body.name.clone()),
            None,
        ),
        Prov::Imported(source) => (
            StoredProv::None,
            Origin::Imported { source },
            SignatureStatus::Unsigned,
            None,
            None,
        ),
        Prov::Shared(tag, s) => (
            StoredProv::None,
            Origin::Shared {
                label: s.label,
                expires_at: s.expires_at,
            },
            SignatureStatus::Unsigned,
            None,
            Some(tag),
        ),
    };

    let atts = fhir::take_attachments(&mut resource).map_err(VaultError::InvalidArgument)?;
    let replaced = tx
        .prepare_cached("DELETE FROM records WHERE id = ?1")?
        .execute([&rid.0[..]])?
        > 0;

    let ck = ContentKey::random(&mut OsRng);
    let wrapped = seal_bytes(
        &keys.wrap,
        ObjectKind::VaultKeyWrap,
        &tagged(T_REC_KEY, &rid.0),
        ck.expose_secret(),
    );

    // Attachments: own content key each, STREAM chunks.
    let mut infos = Vec::with_capacity(atts.len());
    let mut att_rows = Vec::with_capacity(atts.len());
    for a in &atts {
        let mut aid = [0u8; 16];
        OsRng.fill_bytes(&mut aid);
        let ak = ContentKey::random(&mut OsRng);
        let ctx = Context::new(ObjectKind::VaultAttachment, &aid, 0);
        let mut sealer = ChunkSealer::new(&ak, &ctx, DEFAULT_CHUNK_SIZE, &mut OsRng)?;
        let header = sealer.header().to_bytes();
        let mut chunks = Vec::new();
        let size = DEFAULT_CHUNK_SIZE as usize;
        if a.data.is_empty() {
            chunks.push(sealer.seal_chunk(&[], true)?);
        }
        let mut it = a.data.chunks(size).peekable();
        while let Some(c) = it.next() {
            chunks.push(sealer.seal_chunk(c, it.peek().is_none())?);
        }
        let root = sealer.root();
        let meta = AttachmentMeta {
            record: rid,
            slot: a.slot,
            content_type: a.content_type.clone(),
            title: a.title.clone(),
            size: a.data.len() as u64,
            root: hex(&root),
        };
        let meta_pt = Zeroizing::new(
            serde_json::to_vec(&meta).map_err(|_| VaultError::InvalidArgument("attachment"))?,
        );
        infos.push(AttachmentInfo {
            id: hex(&aid),
            content_type: meta.content_type.clone(),
            title: meta.title.clone(),
            size: meta.size,
        });
        att_rows.push((
            aid,
            seal_bytes(
                &keys.wrap,
                ObjectKind::VaultKeyWrap,
                &tagged(T_ATT_KEY, &aid),
                ak.expose_secret(),
            ),
            seal_bytes(
                &ak,
                ObjectKind::VaultValue,
                &tagged(T_ATT_META, &aid),
                &meta_pt,
            ),
            header,
            chunks,
        ));
    }

    let ext = fhir::extract(&resource);
    let summary = RecordSummary {
        id: rid,
        fhir_type: ext.fhir_type,
        fhir_id: ext.fhir_id,
        category: ext.category,
        title: ext.title,
        date: ext.date,
        key_values: ext.key_values,
        codes: ext.codes,
        author: card_name.or(ext.author),
        origin,
        signature,
        attachments: infos,
    };
    let body = StoredBody {
        resource,
        prov: stored_prov,
    };
    let summary_pt = Zeroizing::new(
        serde_json::to_vec(&summary).map_err(|_| VaultError::InvalidArgument("summary"))?,
    );
    let body_pt = Zeroizing::new(
        serde_json::to_vec(&body).map_err(|_| VaultError::InvalidArgument("resource"))?,
    );
    tx.prepare_cached(
        "INSERT INTO records(id, key, summary, body, source) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        &rid.0[..],
        wrapped,
        seal_bytes(
            &ck,
            ObjectKind::VaultValue,
            &tagged(T_REC_SUMMARY, &rid.0),
            &summary_pt
        ),
        seal_bytes(
            &ck,
            ObjectKind::VaultValue,
            &tagged(T_REC_BODY, &rid.0),
            &body_pt
        ),
        source_tag.as_ref().map(|t| &t[..]),
    ])?;
    {
        let mut ins =
            tx.prepare_cached("INSERT OR IGNORE INTO terms(term, record) VALUES (?1, ?2)")?;
        let mut terms = vec![
            format!("type:{}", summary.fhir_type),
            format!("cat:{}", summary.category.as_str()),
        ];
        terms.extend(
            summary
                .codes
                .iter()
                .map(|c| format!("code:{}|{}", c.system, c.code)),
        );
        for t in terms {
            ins.execute(params![&keys.bi_terms.mac(t.as_bytes())[..], &rid.0[..]])?;
        }
    }
    let n_atts = att_rows.len();
    for (aid, wk, meta, header, chunks) in att_rows {
        tx.prepare_cached(
            "INSERT INTO attachments(id, record, key, meta, header) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![&aid[..], &rid.0[..], wk, meta, header])?;
        let mut ins =
            tx.prepare_cached("INSERT INTO chunks(attachment, idx, data) VALUES (?1, ?2, ?3)")?;
        for (i, c) in chunks.iter().enumerate() {
            ins.execute(params![&aid[..], i as i64, c])?;
        }
    }
    Ok((rid, replaced, n_atts))
}

fn record_key(
    conn: &Connection,
    keys: &VaultKeys,
    id: &RecordId,
) -> Result<(ContentKey, Vec<u8>, Vec<u8>)> {
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT key, summary, body FROM records WHERE id = ?1")?
        .query_row([&id.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (k, s, b) = row.ok_or(VaultError::NotFound { what: "record" })?;
    let kb = open_bytes(
        &keys.wrap,
        ObjectKind::VaultKeyWrap,
        &tagged(T_REC_KEY, &id.0),
        &k,
    )
    .map_err(|_| tampered("record", &id.0))?;
    let arr: [u8; 32] = kb
        .as_slice()
        .try_into()
        .map_err(|_| tampered("record", &id.0))?;
    Ok((ContentKey::from_bytes(arr), s, b))
}

fn decode_summary(ck: &ContentKey, id: &RecordId, s: &[u8]) -> Result<RecordSummary> {
    let pt = open_bytes(ck, ObjectKind::VaultValue, &tagged(T_REC_SUMMARY, &id.0), s)
        .map_err(|_| tampered("record", &id.0))?;
    let sum: RecordSummary = serde_json::from_slice(&pt).map_err(|_| tampered("record", &id.0))?;
    if sum.id != *id {
        return Err(tampered("record", &id.0));
    }
    Ok(sum)
}

fn read_summary(conn: &Connection, keys: &VaultKeys, id: &RecordId) -> Result<RecordSummary> {
    let (ck, s, _) = record_key(conn, keys, id)?;
    decode_summary(&ck, id, &s)
}

fn read_attachment(
    conn: &Connection,
    keys: &VaultKeys,
    aid: &[u8],
) -> Result<(AttachmentMeta, Zeroizing<Vec<u8>>)> {
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT key, meta, header FROM attachments WHERE id = ?1")?
        .query_row([aid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (k, m, h) = row.ok_or(VaultError::NotFound { what: "attachment" })?;
    let bad = || tampered("attachment", aid);
    let kb = open_bytes(
        &keys.wrap,
        ObjectKind::VaultKeyWrap,
        &tagged(T_ATT_KEY, aid),
        &k,
    )
    .map_err(|_| bad())?;
    let ak = ContentKey::from_bytes(kb.as_slice().try_into().map_err(|_| bad())?);
    let mp =
        open_bytes(&ak, ObjectKind::VaultValue, &tagged(T_ATT_META, aid), &m).map_err(|_| bad())?;
    let meta: AttachmentMeta = serde_json::from_slice(&mp).map_err(|_| bad())?;
    let header = ChunkHeader::from_bytes(&h).map_err(|_| bad())?;
    let ctx = Context::new(ObjectKind::VaultAttachment, aid, 0);
    let mut opener = ChunkOpener::new(&ak, &ctx, header);
    let chunks: Vec<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM chunks WHERE attachment = ?1 ORDER BY idx")?
        .query_map([aid], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0)));
    let n = chunks.len();
    for (i, c) in chunks.iter().enumerate() {
        out.extend_from_slice(&opener.open_chunk(c, i + 1 == n).map_err(|_| bad())?);
    }
    let root = opener.finish().map_err(|_| bad())?;
    if hex(&root) != meta.root || out.len() as u64 != meta.size {
        return Err(bad());
    }
    Ok((meta, out))
}

fn read_full(
    conn: &Connection,
    keys: &VaultKeys,
    id: &RecordId,
) -> Result<(Record, SignatureStatus)> {
    let (ck, s, b) = record_key(conn, keys, id)?;
    let summary = decode_summary(&ck, id, &s)?;
    let pt = open_bytes(&ck, ObjectKind::VaultValue, &tagged(T_REC_BODY, &id.0), &b)
        .map_err(|_| tampered("record", &id.0))?;
    let body: StoredBody = serde_json::from_slice(&pt).map_err(|_| tampered("record", &id.0))?;
    let mut resource = body.resource;
    let aids: Vec<Vec<u8>> = conn
        .prepare_cached("SELECT id FROM attachments WHERE record = ?1")?
        .query_map([&id.0[..]], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for aid in aids {
        let (meta, data) = read_attachment(conn, keys, &aid)?;
        if meta.record != *id {
            return Err(tampered("attachment", &aid));
        }
        fhir::put_attachment(&mut resource, meta.slot, &data);
    }
    let status = match &body.prov {
        StoredProv::None => SignatureStatus::Unsigned,
        StoredProv::Device { sig } => {
            let ok = unhex(sig)
                .and_then(|s| <[u8; 64]>::try_from(s).ok())
                .is_some_and(|sig| {
                    keys.identity
                        .signing_public()
                        .verify(
                            label::RECORD_SIG,
                            &record_signing_bytes(&resource),
                            &sig,
                            "record",
                        )
                        .is_ok()
                });
            if ok {
                SignatureStatus::Valid {
                    signer: "this device".into(),
                    card_hash: String::new(),
                }
            } else {
                SignatureStatus::Invalid
            }
        }
        StoredProv::Card { card, sig } => {
            let parsed = unhex(card)
                .and_then(|c| Card::from_bytes(&c).ok())
                .zip(unhex(sig).and_then(|s| <[u8; 64]>::try_from(s).ok()));
            match parsed {
                Some((card, sig)) if verify_record_signature(&resource, &card, &sig).is_ok() => {
                    SignatureStatus::Valid {
                        signer: card.body.name.clone(),
                        card_hash: hex(&card.hash()),
                    }
                }
                _ => SignatureStatus::Invalid,
            }
        }
    };
    Ok((Record { summary, resource }, status))
}

fn read_record(conn: &Connection, keys: &VaultKeys, id: &RecordId) -> Result<Record> {
    let (mut rec, status) = read_full(conn, keys, id)?;
    rec.summary.signature = status;
    Ok(rec)
}

fn all_ids(conn: &Connection) -> Result<Vec<RecordId>> {
    let ids: Vec<Vec<u8>> = conn
        .prepare("SELECT id FROM records ORDER BY rowid")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ids.into_iter()
        .map(|v| {
            v.try_into()
                .map(RecordId)
                .map_err(|_| VaultError::BadHeader("record id length"))
        })
        .collect()
}

fn build_index(conn: &Connection, keys: &VaultKeys) -> Result<(Vec<IndexEntry>, Vec<RecordId>)> {
    let mut stmt = conn.prepare("SELECT id, key, summary FROM records")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    while let Some(row) = rows.next()? {
        let id: Vec<u8> = row.get(0)?;
        let Ok(id) = <[u8; 32]>::try_from(id) else {
            continue;
        };
        let rid = RecordId(id);
        let k: Vec<u8> = row.get(1)?;
        let s: Vec<u8> = row.get(2)?;
        let summary = open_bytes(
            &keys.wrap,
            ObjectKind::VaultKeyWrap,
            &tagged(T_REC_KEY, &id),
            &k,
        )
        .ok()
        .and_then(|kb| <[u8; 32]>::try_from(kb.as_slice()).ok())
        .map(ContentKey::from_bytes)
        .and_then(|ck| decode_summary(&ck, &rid, &s).ok());
        match summary {
            Some(summary) => {
                let hay = fhir::haystack(&fhir::Extracted {
                    fhir_type: summary.fhir_type.clone(),
                    fhir_id: String::new(),
                    category: summary.category,
                    title: summary.title.clone(),
                    date: None,
                    key_values: summary.key_values.clone(),
                    codes: summary.codes.clone(),
                    author: summary.author.clone(),
                });
                out.push(IndexEntry { summary, hay });
            }
            None => damaged.push(rid),
        }
    }
    out.sort_by(|a, b| b.summary.date.cmp(&a.summary.date));
    Ok((out, damaged))
}

// ---------------------------------------------------------------------- audit chain

fn read_head(conn: &Connection) -> Result<(Head, Option<[u8; 64]>)> {
    match header_get(conn, "audit_head")? {
        None => Ok((Head::EMPTY, None)),
        Some(b) if b.len() == 8 + 32 + 64 => {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&b[..8]);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&b[8..40]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&b[40..]);
            Ok((
                Head {
                    seq: u64::from_be_bytes(seq),
                    hash,
                },
                Some(sig),
            ))
        }
        Some(_) => Err(VaultError::AuditBroken {
            seq: 0,
            reason: "signed head is malformed",
        }),
    }
}

fn audit_append(
    tx: &Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    event: &AuditEvent,
) -> Result<()> {
    let (head, _) = read_head(tx)?;
    let seq = head.seq + 1;
    let pt = serde_json::to_vec(event).map_err(|_| VaultError::InvalidArgument("audit event"))?;
    let body = seal_bytes(
        &keys.vault,
        ObjectKind::VaultValue,
        &tagged(T_AUDIT, &seq.to_be_bytes()),
        &pt,
    );
    let mut chain = audit::Chain::resume(ChainKind::Local, *vault_id, head);
    let entry = chain.append(now_secs(), event.kind(), body);
    let new_head = chain.head();
    let sig = new_head.sign(ChainKind::Local, vault_id, keys.identity.signing());
    tx.execute(
        "INSERT INTO audit(seq, entry) VALUES (?1, ?2)",
        params![i64::try_from(seq).unwrap_or(i64::MAX), entry.to_bytes()],
    )?;
    let mut h = Vec::with_capacity(104);
    h.extend_from_slice(&new_head.seq.to_be_bytes());
    h.extend_from_slice(&new_head.hash);
    h.extend_from_slice(&sig);
    header_put(tx, "audit_head", &h)
}

fn load_audit(
    conn: &Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
) -> Result<(Head, Vec<AuditRecord>)> {
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT seq, entry FROM audit ORDER BY seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut recs = Vec::with_capacity(rows.len());
    for (seq, bytes) in rows {
        let seq = u64::try_from(seq).unwrap_or(0);
        let broken = |reason| VaultError::AuditBroken { seq, reason };
        let e = Entry::from_bytes(&bytes).map_err(|_| broken("entry is not decodable"))?;
        if e.seq != seq {
            return Err(broken("entry was moved to another position"));
        }
        let pt = open_bytes(
            &keys.vault,
            ObjectKind::VaultValue,
            &tagged(T_AUDIT, &seq.to_be_bytes()),
            &e.body,
        )
        .map_err(|_| broken("entry body was altered"))?;
        let event: AuditEvent =
            serde_json::from_slice(&pt).map_err(|_| broken("entry body is not an event"))?;
        if event.kind() != e.kind {
            return Err(broken("entry kind was altered"));
        }
        recs.push(AuditRecord {
            seq,
            time: e.time,
            event,
        });
        entries.push(e);
    }
    let head =
        audit::verify_extends(ChainKind::Local, vault_id, Head::EMPTY, &entries).map_err(|e| {
            match e {
                carekey_core::Error::AuditChain { seq, reason } => {
                    // A broken link at entry n means entry n-1 (or n's link) was altered.
                    VaultError::AuditBroken { seq, reason }
                }
                other => VaultError::Core(other),
            }
        })?;
    let (signed, sig) = read_head(conn)?;
    if signed != head {
        return Err(VaultError::AuditBroken {
            seq: head.seq.min(signed.seq) + 1,
            reason: "log does not end at the signed head (entries removed, added or altered)",
        });
    }
    let sig = sig.ok_or(VaultError::AuditBroken {
        seq: head.seq,
        reason: "signed head is missing",
    })?;
    head.verify(
        ChainKind::Local,
        vault_id,
        &keys.identity.signing_public(),
        &sig,
    )
    .map_err(|_| VaultError::AuditBroken {
        seq: head.seq,
        reason: "head signature is invalid",
    })?;
    Ok((head, recs))
}
