//! The vault (docs/vault.md): the [`Vault`] struct and its lifecycle (create, open, unlock,
//! lock, idle lock, passphrase), the sealing helpers and AEAD field tags every part shares.
//! The rest lives by concern in the submodules: records and attachments, search, import /
//! export, share sources, app state, device card, audit chain, backup.

mod audit;
mod backup;
mod identity;
mod import;
mod index;
mod records;
mod shares;
mod state;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carekey_core::envelope::{self, Context, Envelope, ObjectKind};
use carekey_core::keys::{Card, RootSecret};
use carekey_core::label;
use carekey_core::wire::Wire;
use rand_core::{OsRng, RngCore};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use zeroize::Zeroizing;

use self::audit::audit_append;
use self::index::IndexEntry;
use crate::crypto::{KdfHeader, KdfParams, RecoveryPhrase, VaultKeys, unwrap_root, wrap_root};
use crate::error::{Result, VaultError};
use crate::schema;
use crate::types::*;

const FORMAT: u32 = 1;

/// Options of [`Vault::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Argon2id cost (default: 64 MiB, t = 3, p = 1).
    pub kdf: KdfParams,
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
    /// time even without user activity (docs/vault.md "Keys", lock and idle lock).
    pub fn set_idle_timeout(&mut self, t: Option<Duration>) {
        self.idle_timeout = t;
    }

    /// The app's timer hook: when the idle timeout has passed, locks exactly as
    /// [`Vault::lock`] does (keys dropped and zeroized, search index dropped, WAL
    /// checkpointed). Cheap when there is nothing to do; call it every few seconds. Does not
    /// count as activity. Returns whether the vault is locked.
    pub fn tick(&mut self) -> bool {
        if self.state.is_some()
            && let Some(t) = self.idle_timeout
            && self.last_used.elapsed() >= t
        {
            self.lock();
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

    /// The vault file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
