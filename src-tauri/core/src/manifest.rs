//! The patient-signed share manifest (docs/protocol.md "Manifest and epochs").
//!
//! Grantees hold content keys and could forge AEAD ciphertexts, so the AEAD tag does not prove a
//! blob is the patient's: the signed SHA-256 of its ciphertext (chunk root for attachments)
//! does. The version only goes up; [`ManifestGuard`] rejects rollbacks.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::envelope::{self, Context, Envelope, ObjectKind};
use crate::error::{Error, Result};
use crate::keys::{ContentKey, EpochKey, PublicKey, SigningSecret};
use crate::label;
use crate::scope::Category;
use crate::wire::{Reader, Wire, Writer};

/// Manifest format version.
pub const MANIFEST_VERSION: u8 = 1;
/// Most entries in one manifest.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Smallest encoded [`ManifestEntry`] (empty title).
pub(crate) const MIN_ENTRY_LEN: usize = 16 + 16 + 1 + 32 + 32 + 8 + 1 + 2;

/// How a blob is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFormat {
    /// One [`Envelope`]; the hash is SHA-256 of its encoding.
    Envelope = 1,
    /// A chunked stream; the hash is its chunk root.
    Chunked = 2,
}

/// One blob of a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Opaque blob id on the relay (fresh per epoch).
    pub blob_id: [u8; 16],
    /// Stable record id in the patient's vault (scope matching).
    pub record_id: [u8; 16],
    /// Sealing format.
    pub format: BlobFormat,
    /// SHA-256 of the ciphertext (or chunk root).
    pub hash: [u8; 32],
    /// Fresh content key of this blob in this epoch.
    pub content_key: ContentKey,
    /// Ciphertext length in bytes.
    pub size: u64,
    /// Record category.
    pub category: Category,
    /// Small display metadata (title, type), sealed with the manifest.
    pub title: String,
}

impl Wire for ManifestEntry {
    const WHAT: &'static str = "manifest entry";
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.blob_id);
        w.raw(&self.record_id);
        w.u8(self.format as u8);
        w.raw(&self.hash);
        w.obj(&self.content_key);
        w.u64(self.size);
        w.u8(self.category as u8);
        w.str16(&self.title);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let blob_id = r.array()?;
        let record_id = r.array()?;
        let format = match r.u8()? {
            1 => BlobFormat::Envelope,
            2 => BlobFormat::Chunked,
            _ => return Err(r.malformed("unknown blob format")),
        };
        let hash = r.array()?;
        let content_key = r.obj()?;
        let size = r.u64()?;
        let category =
            Category::from_index(r.u8()?).ok_or_else(|| r.malformed("unknown category"))?;
        Ok(Self {
            blob_id,
            record_id,
            format,
            hash,
            content_key,
            size,
            category,
            title: r.str16()?,
        })
    }
}

impl ManifestEntry {
    /// The blob's AEAD context: bound to its id, kind and epoch.
    pub fn context(&self, epoch: u32) -> Context<'_> {
        let kind = match self.format {
            BlobFormat::Envelope => ObjectKind::RecordBlob,
            BlobFormat::Chunked => ObjectKind::Attachment,
        };
        Context::new(kind, &self.blob_id, epoch)
    }

    /// Checks a downloaded envelope blob against the signed hash (constant time), then opens it.
    pub fn open_blob(&self, epoch: u32, blob: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        match self.format {
            BlobFormat::Envelope => {
                let h: [u8; 32] = Sha256::digest(blob).into();
                if !bool::from(h.ct_eq(&self.hash)) {
                    return Err(Error::HashMismatch);
                }
                envelope::open(
                    &self.content_key,
                    &self.context(epoch),
                    &Envelope::from_bytes(blob)?,
                )
            }
            BlobFormat::Chunked => {
                let (pt, root) =
                    envelope::open_chunked(&self.content_key, &self.context(epoch), blob)?;
                if !bool::from(root.ct_eq(&self.hash)) {
                    return Err(Error::HashMismatch);
                }
                Ok(pt)
            }
        }
    }

    /// Seals a record as an envelope blob with a fresh key; returns the entry and the blob.
    pub fn seal_record<R: RngCore + CryptoRng>(
        record_id: [u8; 16],
        category: Category,
        title: &str,
        epoch: u32,
        plaintext: &[u8],
        rng: &mut R,
    ) -> (Self, Vec<u8>) {
        let mut blob_id = [0u8; 16];
        rng.fill_bytes(&mut blob_id);
        let content_key = ContentKey::random(rng);
        let ctx = Context::new(ObjectKind::RecordBlob, &blob_id, epoch);
        let blob = envelope::seal(&content_key, &ctx, plaintext, rng).to_bytes();
        let entry = Self {
            blob_id,
            record_id,
            format: BlobFormat::Envelope,
            hash: Sha256::digest(&blob).into(),
            content_key,
            size: blob.len() as u64,
            category,
            title: title.to_owned(),
        };
        (entry, blob)
    }

    /// Seals an attachment as a chunked blob with a fresh key.
    pub fn seal_attachment<R: RngCore + CryptoRng>(
        record_id: [u8; 16],
        category: Category,
        title: &str,
        epoch: u32,
        data: &[u8],
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>)> {
        let mut blob_id = [0u8; 16];
        rng.fill_bytes(&mut blob_id);
        let content_key = ContentKey::random(rng);
        let ctx = Context::new(ObjectKind::Attachment, &blob_id, epoch);
        let (blob, root) =
            envelope::seal_chunked(&content_key, &ctx, data, envelope::DEFAULT_CHUNK_SIZE, rng)?;
        let entry = Self {
            blob_id,
            record_id,
            format: BlobFormat::Chunked,
            hash: root,
            content_key,
            size: blob.len() as u64,
            category,
            title: title.to_owned(),
        };
        Ok((entry, blob))
    }
}

/// The list of a share's blobs in one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The share.
    pub share_id: [u8; 16],
    /// Only goes up, across epochs.
    pub version: u64,
    /// Epoch whose keys sealed the blobs.
    pub epoch: u32,
    /// Unix seconds.
    pub issued_at: u64,
    /// The blobs.
    pub entries: Vec<ManifestEntry>,
}

impl Wire for Manifest {
    const WHAT: &'static str = "manifest";
    fn encode(&self, w: &mut Writer) {
        w.u8(MANIFEST_VERSION);
        w.raw(&self.share_id);
        w.u64(self.version);
        w.u32(self.epoch);
        w.u64(self.issued_at);
        w.u32(u32::try_from(self.entries.len()).unwrap_or(u32::MAX));
        for e in &self.entries {
            w.obj(e);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(MANIFEST_VERSION)?;
        let share_id = r.array()?;
        let version = r.u64()?;
        let epoch = r.u32()?;
        let issued_at = r.u64()?;
        let n = r.u32()? as usize;
        // Never pre-allocate from a hostile count.
        if n > MAX_ENTRIES || n > r.remaining() / MIN_ENTRY_LEN {
            return Err(r.malformed("entry count exceeds the input"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(r.obj()?);
        }
        Ok(Self {
            share_id,
            version,
            epoch,
            issued_at,
            entries,
        })
    }
}

impl Manifest {
    /// Signs with the patient's key and seals under the epoch key, bound to the share and
    /// epoch: the relay object.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        patient: &SigningSecret,
        epoch_key: &EpochKey,
        rng: &mut R,
    ) -> Vec<u8> {
        let body = self.to_bytes();
        let sig = patient.sign(label::MANIFEST_SIG, &body);
        let mut w = Writer::new();
        w.bytes32(&body);
        w.raw(&sig);
        let ctx = Context::new(ObjectKind::Manifest, &self.share_id, self.epoch);
        envelope::seal(epoch_key, &ctx, w.as_slice(), rng).to_bytes()
    }

    /// Opens a sealed manifest, checks the patient's signature and that it is the share and
    /// epoch expected.
    pub fn open(
        sealed: &[u8],
        share_id: &[u8; 16],
        epoch: u32,
        epoch_key: &EpochKey,
        patient: &PublicKey,
    ) -> Result<Self> {
        let ctx = Context::new(ObjectKind::Manifest, share_id, epoch);
        let pt = envelope::open(epoch_key, &ctx, &Envelope::from_bytes(sealed)?)?;
        let mut r = Reader::new(&pt, "manifest");
        let body = r.bytes32()?;
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        patient.verify(label::MANIFEST_SIG, body, &sig, "manifest")?;
        let m = Self::from_bytes(body)?;
        if m.share_id != *share_id || m.epoch != epoch {
            return Err(Error::Malformed {
                what: "manifest",
                reason: "signed for another share or epoch",
            });
        }
        Ok(m)
    }
}

/// Remembers the newest manifest version seen for a share; rejects older ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManifestGuard {
    newest: u64,
}

impl ManifestGuard {
    /// Resumes from a stored version.
    pub fn from_newest(newest: u64) -> Self {
        Self { newest }
    }
    /// Newest version accepted.
    pub fn newest(&self) -> u64 {
        self.newest
    }
    /// Accepts `m` if it is at least as new as anything seen (a re-fetch of the same version
    /// is fine); records it.
    pub fn accept(&mut self, m: &Manifest) -> Result<()> {
        if m.version < self.newest {
            return Err(Error::Rollback {
                what: "manifest",
                have: self.newest,
                got: m.version,
            });
        }
        self.newest = m.version;
        Ok(())
    }
}
