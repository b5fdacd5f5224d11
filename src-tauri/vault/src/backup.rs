//! Backup blob: the whole vault file (already encrypted row by row) sealed once more under a
//! key derived from the root secret, so the recovery phrase alone restores it.
//!
//! Layout (docs/vault.md "Backup blob"): `version (1) || key generation (u32) ||
//! backup version (u64) || created_at (u64) || envelope`. The envelope's AAD binds
//! (kind Backup, id = backup id || key generation || backup version), so a blob cannot be
//! relabelled with another version.

use carekey_core::envelope::{self, Context, Envelope, ObjectKind};
use carekey_core::keys::RootSecret;
use carekey_core::label;
use carekey_core::wire::{Reader, Writer};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{Result, VaultError};

const BACKUP_VERSION: u8 = 1;

/// Relay object id of the backup under key generation `generation`.
pub fn backup_id(root: &RootSecret, generation: u32) -> [u8; 16] {
    let k = root.derive(label::KDF_BACKUP_ID, generation);
    let mut id = [0u8; 16];
    id.copy_from_slice(&k.expose_secret()[..16]);
    id
}

fn aad_id(root: &RootSecret, generation: u32, version: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(&backup_id(root, generation));
    w.u32(generation);
    w.u64(version);
    w.into_bytes()
}

/// Seals a snapshot.
pub(crate) fn seal(
    root: &RootSecret,
    generation: u32,
    version: u64,
    created_at: u64,
    snapshot: &[u8],
) -> Vec<u8> {
    let key = root.derive(label::KDF_BACKUP_KEY, generation);
    let id = aad_id(root, generation, version);
    let env = envelope::seal(
        &key,
        &Context::new(ObjectKind::Backup, &id, 0),
        snapshot,
        &mut OsRng,
    );
    let mut w = Writer::new();
    w.u8(BACKUP_VERSION);
    w.u32(generation);
    w.u64(version);
    w.u64(created_at);
    w.obj(&env);
    w.into_bytes()
}

/// Header fields of a backup blob, readable without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupInfo {
    /// Key generation.
    pub generation: u32,
    /// Backup version (only goes up).
    pub version: u64,
    /// Unix seconds.
    pub created_at: u64,
}

fn decode(blob: &[u8]) -> Result<(BackupInfo, Envelope)> {
    let mut r = Reader::new(blob, "backup blob");
    r.version(BACKUP_VERSION)
        .map_err(|_| VaultError::Backup("unknown backup format version"))?;
    let parse = |r: &mut Reader<'_>| -> carekey_core::Result<(BackupInfo, Envelope)> {
        let info = BackupInfo {
            generation: r.u32()?,
            version: r.u64()?,
            created_at: r.u64()?,
        };
        Ok((info, r.obj()?))
    };
    let out = parse(&mut r).map_err(|_| VaultError::Backup("malformed backup blob"))?;
    r.finish()
        .map_err(|_| VaultError::Backup("malformed backup blob"))?;
    Ok(out)
}

/// Reads the clear header of a blob.
pub fn inspect(blob: &[u8]) -> Result<BackupInfo> {
    Ok(decode(blob)?.0)
}

/// Opens a blob; refuses versions below `min_version`; a wrong root is `WrongPhrase`.
pub(crate) fn open(
    root: &RootSecret,
    blob: &[u8],
    min_version: u64,
) -> Result<(u64, Zeroizing<Vec<u8>>)> {
    let (info, env) = decode(blob)?;
    if info.version < min_version {
        return Err(VaultError::Backup(
            "backup is older than the newest state seen (rollback refused)",
        ));
    }
    let key = root.derive(label::KDF_BACKUP_KEY, info.generation);
    let id = aad_id(root, info.generation, info.version);
    let pt = envelope::open(&key, &Context::new(ObjectKind::Backup, &id, 0), &env)
        .map_err(|_| VaultError::WrongPhrase)?;
    Ok((info.version, pt))
}
