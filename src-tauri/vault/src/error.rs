//! The one error type of `carekey-vault`.
//!
//! Messages name the operation and the rule that failed, never a value: no patient data, key,
//! passphrase or plaintext reaches an error string. Positions (line and entry numbers, file names
//! of an import) are given so the user can find the fault in their own file.

use std::fmt;

/// Where in an import a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Zero-based index of a `Bundle.entry`.
    Entry(usize),
    /// One-based line of an NDJSON file (file name as given by the caller).
    Line {
        /// File name.
        file: String,
        /// One-based line number.
        line: usize,
    },
    /// The document as a whole (not valid JSON, not a Bundle).
    Document,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Entry(i) => write!(f, "bundle entry {i}"),
            Position::Line { file, line } => write!(f, "{file} line {line}"),
            Position::Document => f.write_str("document"),
        }
    }
}

/// Everything that can go wrong in the vault. Each variant says how it can happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The vault is locked (never unlocked, locked by the user, or evicted after the idle
    /// timeout): unlock it again with the passphrase.
    #[error("the vault is locked")]
    Locked,
    /// The passphrase does not unwrap the root secret: a typo, or another vault's passphrase.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The recovery phrase is well-formed but belongs to another vault or backup.
    #[error("the recovery phrase does not match this vault or backup")]
    WrongPhrase,
    /// The recovery phrase is not 24 BIP39 English words with a valid checksum (a typo).
    #[error("the recovery phrase is not valid (expected 24 words with a valid checksum)")]
    InvalidPhrase,
    /// The file was written by a newer app version whose schema this build does not know.
    #[error(
        "vault schema version {found} is newer than this app supports ({supported}); update the app"
    )]
    NewerSchema {
        /// Version found in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// The file is not a Carekey vault, or its header is missing fields or damaged.
    #[error("not a Carekey vault or its header is damaged ({0})")]
    BadHeader(&'static str),
    /// A stored value failed authentication: the file was tampered with or damaged on disk.
    /// Other rows remain readable.
    #[error("{what} {id} is damaged or was tampered with (authentication failed)")]
    Tampered {
        /// Which kind of row.
        what: &'static str,
        /// Opaque row id (hex of a MAC or random id; reveals nothing).
        id: String,
    },
    /// No record or attachment with this id.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: &'static str,
    },
    /// Import input is malformed at a position: nothing of this import was stored.
    #[error("import failed at {at}: {reason}; nothing was imported")]
    Import {
        /// Where.
        at: Position,
        /// Which rule the input broke (never echoes the input).
        reason: String,
    },
    /// The import was cancelled through its cancellation flag: nothing was stored.
    #[error("import cancelled; nothing was imported")]
    Cancelled,
    /// A record or note signature does not verify under the author's card.
    #[error("record signature is invalid")]
    BadSignature,
    /// The local audit chain does not verify: the entry named was altered, removed or
    /// reordered, or the signed head does not match.
    #[error("local audit log broken at entry {seq}: {reason}")]
    AuditBroken {
        /// Sequence number of the first bad entry.
        seq: u64,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A backup blob is malformed, of an unknown version, or older than allowed (rollback).
    #[error("backup rejected: {0}")]
    Backup(&'static str),
    /// An argument is outside what the vault accepts (KDF parameters too weak, empty
    /// passphrase, record not a FHIR resource).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A core protocol error (decoding, signature, audit chain).
    #[error(transparent)]
    Core(#[from] carekey_core::Error),
    /// SQLite failed (disk full, file locked by another process, I/O error, corrupt file).
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// File-system error (backup staging, vault path).
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of the vault.
pub type Result<T, E = VaultError> = core::result::Result<T, E>;

impl VaultError {
    /// Stable machine-readable code for the UI (app commands map errors to these).
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::Locked => "locked",
            VaultError::WrongPassphrase => "wrong_passphrase",
            VaultError::WrongPhrase => "wrong_phrase",
            VaultError::InvalidPhrase => "invalid_phrase",
            VaultError::NewerSchema { .. } => "newer_schema",
            VaultError::BadHeader(_) => "bad_header",
            VaultError::Tampered { .. } => "tampered",
            VaultError::NotFound { .. } => "not_found",
            VaultError::Import { .. } => "import_failed",
            VaultError::Cancelled => "cancelled",
            VaultError::BadSignature => "bad_signature",
            VaultError::AuditBroken { .. } => "audit_broken",
            VaultError::Backup(_) => "backup_rejected",
            VaultError::InvalidArgument(_) => "invalid_argument",
            VaultError::Core(_) => "protocol",
            VaultError::Storage(_) => "storage",
            VaultError::Io(_) => "io",
        }
    }
}

impl serde::Serialize for VaultError {
    /// `{ "code": …, "message": … }` for app commands (messages carry no patient data).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("VaultError", 2)?;
        st.serialize_field("code", self.code())?;
        st.serialize_field("message", &self.to_string())?;
        st.end()
    }
}
