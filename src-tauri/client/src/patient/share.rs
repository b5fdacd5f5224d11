//! Creating a share and replacing its manifest (docs/protocol.md "Shares", "Epochs").

use std::collections::BTreeSet;

use carekey_core::audit::Head;
use carekey_core::epoch::Epoch;
use carekey_core::grant::Policy;
use carekey_core::keys::GroupSecret;
use carekey_core::manifest::{Manifest, ManifestEntry};
use rand_core::OsRng;

use crate::error::{ClientError, Result};
use crate::ids::ShareId;
use crate::now;
use crate::progress::{Cancel, Progress, ProgressSink, Stage};
use crate::relay::OwnerCap;

use super::{
    Patient, ScopedShare, ShareItem, ShareOptions, ShareState, register_blob_groups,
    share_elements, swap_manifest,
};

impl Patient {
    /// Seals and uploads a new share (epoch 1, manifest version 1).
    pub async fn create_share(
        &mut self,
        items: Vec<ShareItem>,
        options: ShareOptions,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<ShareId> {
        if options.policy != Policy::Allowed && options.delegation_depth != 0 {
            return Err(ClientError::InvalidInput(
                "delegation depth needs policy allowed",
            ));
        }
        if self.relay_audit_key.is_none() {
            // Pin the relay's audit key on first use (trust on first use, like a card).
            self.relay_audit_key = Some(self.relay.well_known().await?);
        }
        let mut owner = OwnerCap::generate();
        let share_id = self
            .relay
            .create_share(&mut owner, options.expires_at)
            .await?;
        let mut st = ShareState {
            owner,
            epoch: Epoch::first(&mut OsRng),
            manifest_version: 0,
            options,
            items,
            items_saved: false,
            grants: Vec::new(),
            delegations: Vec::new(),
            notice_cursor: 0,
            audit_pin: Head::EMPTY,
            log: Vec::new(),
            log_seq: 0,
            scoped: Some(ScopedShare {
                groups: GroupSecret::random(&mut OsRng),
                records: BTreeSet::new(),
                manifest: None,
                manifest_saved: false,
            }),
        };
        let m = self
            .upload_epoch(&share_id, &mut st, progress, cancel)
            .await?;
        if let Some(sc) = &st.scoped {
            let elements = share_elements(sc);
            register_blob_groups(&self.relay, &share_id, &mut st, &m, &elements).await?;
        }
        self.swap_manifest(&share_id, &mut st, &m).await?;
        self.shares.insert(share_id, st);
        Ok(share_id)
    }

    /// Seals every item under fresh content keys and blob ids of the current epoch and uploads
    /// the blobs; returns the next manifest (not yet swapped in).
    pub(super) async fn upload_epoch(
        &self,
        share_id: &ShareId,
        st: &mut ShareState,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<Manifest> {
        let epoch = st.epoch.number;
        let mut entries = Vec::with_capacity(st.items.len());
        let mut blobs = Vec::with_capacity(st.items.len());
        let n = st.items.len() as u64;
        for (i, it) in st.items.iter().enumerate() {
            cancel.check()?;
            let (e, blob) = if it.attachment {
                ManifestEntry::seal_attachment(
                    it.record_id,
                    it.category,
                    &it.title,
                    epoch,
                    &it.data,
                    &mut OsRng,
                )?
            } else {
                ManifestEntry::seal_record(
                    it.record_id,
                    it.category,
                    &it.title,
                    epoch,
                    &it.data,
                    &mut OsRng,
                )
            };
            entries.push(e);
            blobs.push(blob);
            progress.report(Progress {
                stage: Stage::Sealing,
                done: i as u64 + 1,
                total: n,
            });
        }
        let total: u64 = blobs.iter().map(|b| b.len() as u64).sum();
        let mut done = 0;
        for (e, blob) in entries.iter().zip(&blobs) {
            cancel.check()?;
            self.relay
                .put_blob(
                    &mut st.owner,
                    share_id,
                    &crate::ids::BlobId(e.blob_id),
                    epoch,
                    blob,
                    progress,
                    cancel,
                    (done, total),
                )
                .await?;
            done += blob.len() as u64;
        }
        Ok(Manifest {
            share_id: share_id.to_bytes(),
            version: st.manifest_version + 1,
            epoch,
            issued_at: now(),
            entries,
        })
    }

    /// Signs, seals and compare-and-swaps `m` in as the share's manifest.
    pub(super) async fn swap_manifest(
        &self,
        share_id: &ShareId,
        st: &mut ShareState,
        m: &Manifest,
    ) -> Result<()> {
        swap_manifest(&self.relay, &self.identity, share_id, st, m).await
    }
}
