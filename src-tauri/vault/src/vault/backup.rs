//! Backup blob and restore (docs/vault.md "Recovery phrase and backup blob"); the blob format
//! itself is `crate::backup`.

use std::path::Path;

use carekey_core::envelope::Envelope;
use carekey_core::keys::SigningSecret;
use carekey_core::label;
use carekey_core::wire::Wire;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::audit::audit_append;
use super::{CreateOptions, Unlocked, Vault, header_get, header_put, hex, now_secs, require};
use crate::crypto::{RecoveryPhrase, VaultKeys};
use crate::error::{Result, VaultError};
use crate::types::*;

impl Vault {
    /// The owner (write-capability) key of this vault's backup object on the relay, for key
    /// generation `generation` (`KDF_BACKUP_OWNER`): the client signs backup uploads with it.
    pub fn backup_owner_key(&mut self, generation: u32) -> Result<SigningSecret> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let seed = st.keys.root.derive(label::KDF_BACKUP_OWNER, generation);
        Ok(SigningSecret::from_seed(seed.expose_secret()))
    }

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
