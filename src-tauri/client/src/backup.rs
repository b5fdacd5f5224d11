//! Encrypted vault backup to the relay and restore on a fresh device from the 24-word phrase
//! (docs/vault.md "Recovery phrase and backup blob").
//!
//! The backup slot id and its owner (write) key both derive from the root secret
//! (`carekey_vault::backup_id`, `KDF_BACKUP_OWNER`, key generation 0), so the phrase alone
//! finds and opens the backup on a new phone; the passphrase never leaves the device. The
//! relay keeps only the newest version and refuses a lower one, and restore refuses a blob
//! older than the version the relay reports. That is not enough: the newest backup may
//! predate the last revoke, and a hostile front end can serve an older blob with its own
//! version. So the restored vault is marked, and the patient state loaded from it refuses
//! every write until `Patient::reconcile` has checked each share against the relay's signed
//! audit log (docs/protocol.md "Restore and reconciliation"). The slot's write counter starts
//! from the clock (crate::persist), because a new device cannot know the last counter used.
//!
//! No vault is held across network I/O: [`prepare`] takes the snapshot synchronously,
//! [`upload`] sends it without the vault.

use std::path::Path;

use carekey_core::keys::SigningSecret;
use carekey_core::label;
use carekey_vault::{Backup, CreateOptions, RecoveryPhrase, Vault, backup_id};

use crate::error::{ClientError, Result};
use crate::persist::now_micros;
use crate::progress::{Cancel, Progress, ProgressSink, Stage};
use crate::relay::{OwnerCap, Relay};

/// Key generation of the backup keys in use.
const GENERATION: u32 = 0;

/// Takes the backup snapshot of `vault` (synchronous; the backup version goes up and the
/// audit chain logs it) with the backup slot's owner key: upload it with [`upload`], with no
/// vault held.
pub fn prepare(vault: &mut Vault) -> Result<(Backup, SigningSecret)> {
    let key = vault.backup_owner_key(GENERATION)?;
    let backup = vault.backup()?;
    Ok((backup, key))
}

/// Stores a backup made by [`prepare`] on `relay` (no vault involved). Returns the backup
/// version.
pub async fn upload(
    relay: &Relay,
    backup: Backup,
    owner_key: SigningSecret,
    progress: &dyn ProgressSink,
    cancel: &Cancel,
) -> Result<u64> {
    cancel.check()?;
    let mut cap = OwnerCap::resume(owner_key, 0, now_micros());
    let size = backup.blob.len() as u64;
    relay
        .put_backup(&mut cap, &backup.id, backup.version, backup.blob)
        .await?;
    progress.report(Progress {
        stage: Stage::Uploading,
        done: size,
        total: size,
    });
    Ok(backup.version)
}

/// Makes a backup of `vault` and stores it on `relay`; returns the backup version. The
/// snapshot is taken when this is called ([`prepare`]); the returned future does the upload
/// ([`upload`]) and does not borrow the vault.
pub fn backup_to_relay<'a>(
    vault: &mut Vault,
    relay: &'a Relay,
    progress: &'a dyn ProgressSink,
    cancel: &'a Cancel,
) -> impl Future<Output = Result<u64>> + Send + use<'a> {
    let prepared = cancel.check().and_then(|()| prepare(vault));
    async move {
        let (backup, key) = prepared?;
        upload(relay, backup, key, progress, cancel).await
    }
}

/// On a fresh device: finds the backup the phrase points at on `relay`, checks it is the
/// newest the relay has, and restores it into a new vault at `path` protected by
/// `new_passphrase` (returned unlocked), marked as restored: the patient state loaded from it
/// must be reconciled (`Patient::reconcile`) before any write. A wrong phrase finds nothing
/// (`not_found`).
pub async fn restore_from_relay(
    relay: &Relay,
    phrase: &str,
    path: &Path,
    new_passphrase: &str,
    opts: &CreateOptions,
) -> Result<Vault> {
    let root = RecoveryPhrase::parse(phrase)?.root()?;
    let id = backup_id(&root, GENERATION);
    let seed = root.derive(label::KDF_BACKUP_OWNER, GENERATION);
    let mut cap = OwnerCap::resume(
        SigningSecret::from_seed(seed.expose_secret()),
        0,
        now_micros(),
    );
    let (version, blob) = relay
        .get_backup(&mut cap, &id)
        .await?
        .ok_or(ClientError::NotFound)?;
    let mut vault = Vault::restore_backup(path, phrase, &blob, version, new_passphrase, opts)?;
    vault.put_state(crate::patient::RESTORED_MARK, &[])?;
    Ok(vault)
}
