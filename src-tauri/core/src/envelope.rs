//! Sealing with XChaCha20-Poly1305 under a context-bound AAD (docs/protocol.md "Primitives").
//!
//! Every envelope binds `(version, object kind, object id, epoch)` in its AAD, so a ciphertext
//! copied to another id, kind, share or epoch fails to open. Nonces are 192-bit random: the keys
//! here seal many messages, possibly on several devices (a restored backup), so counters could
//! repeat.
//!
//! Large attachments use [`ChunkSealer`]/[`ChunkOpener`], the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway, Vizár 2015) on XChaCha20-Poly1305: nonce = 19-byte random prefix ||
//! u32 chunk index || last-chunk flag. Reordering changes the index, truncation loses the last
//! flag, appending needs a chunk after the last one, and substitution from another stream fails
//! the prefix, key, or AAD.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::aead::Aead;
pub use crate::aead::TAG_LEN;
use crate::error::{Error, Result};
use crate::keys::ContentKey;
use crate::label;
use crate::wire::{Reader, Wire, Writer};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Chunked stream format version.
pub const CHUNKED_VERSION: u8 = 1;
/// XChaCha20 nonce length.
pub const NONCE_LEN: usize = 24;
/// Default plaintext bytes per chunk of a chunked stream.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest accepted chunk size (bounds memory of a reader fed hostile headers).
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;

/// What kind of object a ciphertext is; part of the AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// One record (FHIR resource + summary) in a share.
    RecordBlob = 1,
    /// The share manifest.
    Manifest = 2,
    /// A chunked attachment in a share.
    Attachment = 3,
    /// The grant sent over the pairing channel.
    PairingGrant = 4,
    /// The doctor's pairing reply.
    PairingReply = 5,
    /// A relationship message.
    Message = 6,
    /// A vault backup.
    Backup = 7,
    /// A value in a local vault table.
    VaultValue = 8,
    /// A wrapped per-record key in a local vault.
    VaultKeyWrap = 9,
    /// A chunked attachment in a local vault.
    VaultAttachment = 10,
    /// One section of a scoped (version 2) share manifest (docs/protocol.md "Scoped keys").
    ManifestSection = 11,
}

/// The context a ciphertext is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Object kind.
    pub kind: ObjectKind,
    /// Opaque object id (blob id, row MAC, pairing id…).
    pub id: &'a [u8],
    /// Share epoch (0 where epochs do not apply).
    pub epoch: u32,
}

impl<'a> Context<'a> {
    /// A context.
    pub fn new(kind: ObjectKind, id: &'a [u8], epoch: u32) -> Self {
        Self { kind, id, epoch }
    }

    pub(crate) fn aad(&self, prefix: &str, version: u8) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(prefix.as_bytes());
        w.u8(0);
        w.u8(version);
        w.u8(self.kind as u8);
        w.u32(self.epoch);
        w.bytes16(self.id);
        w.into_bytes()
    }
}

/// A sealed value: `version || nonce || ciphertext+tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Random 192-bit nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext with the 16-byte tag appended.
    pub ciphertext: Vec<u8>,
}

impl core::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Envelope({} bytes)", self.ciphertext.len())
    }
}

impl Wire for Envelope {
    const WHAT: &'static str = "envelope";
    fn encode(&self, w: &mut Writer) {
        w.u8(ENVELOPE_VERSION);
        w.raw(&self.nonce);
        w.raw(&self.ciphertext);
    }
    /// Consumes the rest of the input: an envelope is always the last field.
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(ENVELOPE_VERSION)?;
        let nonce = r.array()?;
        let ciphertext = r.rest().to_vec();
        if ciphertext.len() < TAG_LEN {
            return Err(Error::Truncated { what: Self::WHAT });
        }
        Ok(Self { nonce, ciphertext })
    }
}

const XCHACHA: Aead = Aead::XChaCha20Poly1305;

// The trait lives with the key types (keys.rs decides which keys may seal); re-exported here,
// where callers have always named it.
pub use crate::keys::SealingKey;

/// Seals `plaintext` under `key`, bound to `ctx`.
pub fn seal<K: SealingKey, R: RngCore + CryptoRng>(
    key: &K,
    ctx: &Context<'_>,
    plaintext: &[u8],
    rng: &mut R,
) -> Envelope {
    seal_with_key(key.key_bytes(), ctx, plaintext, rng)
}

/// Seals under raw key bytes (derived session keys).
pub(crate) fn seal_with_key<R: RngCore + CryptoRng>(
    key: &[u8; 32],
    ctx: &Context<'_>,
    plaintext: &[u8],
    rng: &mut R,
) -> Envelope {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    XCHACHA
        .seal_in_place(
            key,
            &nonce,
            &ctx.aad(label::ENVELOPE_AAD, ENVELOPE_VERSION),
            &mut buf,
        )
        .expect("24-byte nonce, and XChaCha20-Poly1305 only fails above 256 GiB");
    Envelope {
        nonce,
        ciphertext: buf,
    }
}

/// Opens an envelope sealed by [`seal`] under the same key and context.
pub fn open<K: SealingKey>(
    key: &K,
    ctx: &Context<'_>,
    env: &Envelope,
) -> Result<Zeroizing<Vec<u8>>> {
    open_with_key(key.key_bytes(), ctx, env, "envelope")
}

pub(crate) fn open_with_key(
    key: &[u8; 32],
    ctx: &Context<'_>,
    env: &Envelope,
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(env.ciphertext.clone());
    XCHACHA.open_in_place(
        key,
        &env.nonce,
        &ctx.aad(label::ENVELOPE_AAD, ENVELOPE_VERSION),
        &mut buf,
        what,
    )?;
    Ok(buf)
}

/// Header of a chunked stream: `version || nonce prefix (19) || chunk size (u32)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Random per-stream nonce prefix.
    pub prefix: [u8; 19],
    /// Plaintext bytes per chunk (all chunks but the last are exactly this long).
    pub chunk_size: u32,
}

impl ChunkHeader {
    /// Encoded length.
    pub const LEN: usize = 1 + 19 + 4;
}

impl Wire for ChunkHeader {
    const WHAT: &'static str = "chunk header";
    fn encode(&self, w: &mut Writer) {
        w.u8(CHUNKED_VERSION);
        w.raw(&self.prefix);
        w.u32(self.chunk_size);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(CHUNKED_VERSION)?;
        let prefix = r.array()?;
        let chunk_size = r.u32()?;
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(r.malformed("chunk size out of range"));
        }
        Ok(Self { prefix, chunk_size })
    }
}

fn chunk_nonce(prefix: &[u8; 19], index: u32, last: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..19].copy_from_slice(prefix);
    n[19..23].copy_from_slice(&index.to_be_bytes());
    n[23] = u8::from(last);
    n
}

/// Seals a stream chunk by chunk, keeping the running chunk root.
pub struct ChunkSealer {
    key: ContentKey,
    header: ChunkHeader,
    aad: Vec<u8>,
    index: u32,
    root: Sha256,
}

impl core::fmt::Debug for ChunkSealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ChunkSealer(chunk {})", self.index)
    }
}

impl ChunkSealer {
    /// Starts a stream; write [`ChunkSealer::header`] first.
    pub fn new<R: RngCore + CryptoRng>(
        key: &ContentKey,
        ctx: &Context<'_>,
        chunk_size: u32,
        rng: &mut R,
    ) -> Result<Self> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::Malformed {
                what: "chunk header",
                reason: "chunk size out of range",
            });
        }
        let mut prefix = [0u8; 19];
        rng.fill_bytes(&mut prefix);
        let header = ChunkHeader { prefix, chunk_size };
        let mut root = Sha256::new();
        root.update(label::signed_message(label::CHUNK_ROOT, &header.to_bytes()));
        Ok(Self {
            key: key.clone(),
            header,
            aad: ctx.aad(label::CHUNK_AAD, CHUNKED_VERSION),
            index: 0,
            root,
        })
    }

    /// The stream header.
    pub fn header(&self) -> ChunkHeader {
        self.header
    }

    /// Seals the next chunk; `data` must be exactly `chunk_size` long unless `last`.
    pub fn seal_chunk(&mut self, data: &[u8], last: bool) -> Result<Vec<u8>> {
        let size = self.header.chunk_size as usize;
        if data.len() > size || (!last && data.len() != size) {
            return Err(Error::ChunkStream {
                reason: "chunk of the wrong size",
            });
        }
        let nonce = chunk_nonce(&self.header.prefix, self.index, last);
        let mut buf = Vec::with_capacity(data.len() + TAG_LEN);
        buf.extend_from_slice(data);
        XCHACHA.seal_in_place(self.key.expose_secret(), &nonce, &self.aad, &mut buf)?;
        self.root.update(Sha256::digest(&buf));
        self.index = self.index.checked_add(1).ok_or(Error::ChunkStream {
            reason: "more than 2^32 chunks",
        })?;
        Ok(buf)
    }

    /// The chunk root after the last chunk: what the manifest records.
    pub fn root(self) -> [u8; 32] {
        self.root.finalize().into()
    }
}

/// Opens a stream chunk by chunk, in order.
pub struct ChunkOpener {
    key: ContentKey,
    header: ChunkHeader,
    aad: Vec<u8>,
    index: u32,
    done: bool,
    root: Sha256,
}

impl core::fmt::Debug for ChunkOpener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ChunkOpener(chunk {}, done {})", self.index, self.done)
    }
}

impl ChunkOpener {
    /// Starts reading a stream with the given header.
    pub fn new(key: &ContentKey, ctx: &Context<'_>, header: ChunkHeader) -> Self {
        let mut root = Sha256::new();
        root.update(label::signed_message(label::CHUNK_ROOT, &header.to_bytes()));
        Self {
            key: key.clone(),
            header,
            aad: ctx.aad(label::CHUNK_AAD, CHUNKED_VERSION),
            index: 0,
            done: false,
            root,
        }
    }

    /// Sealed length of a full chunk.
    pub fn sealed_chunk_len(&self) -> usize {
        self.header.chunk_size as usize + TAG_LEN
    }

    /// Opens the next chunk. `last` is what the transport says (end of stream); a chunk sealed
    /// as last but delivered as non-last, or the reverse, fails to open.
    pub fn open_chunk(&mut self, sealed: &[u8], last: bool) -> Result<Zeroizing<Vec<u8>>> {
        if self.done {
            return Err(Error::ChunkStream {
                reason: "data after the final chunk",
            });
        }
        let n = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::ChunkStream {
                reason: "chunk shorter than its tag",
            })?;
        if n > self.header.chunk_size as usize || (!last && n != self.header.chunk_size as usize) {
            return Err(Error::ChunkStream {
                reason: "chunk of the wrong size",
            });
        }
        let nonce = chunk_nonce(&self.header.prefix, self.index, last);
        let mut buf = Zeroizing::new(sealed.to_vec());
        XCHACHA.open_in_place(
            self.key.expose_secret(),
            &nonce,
            &self.aad,
            &mut buf,
            "attachment chunk",
        )?;
        self.root.update(Sha256::digest(sealed));
        self.index = self.index.checked_add(1).ok_or(Error::ChunkStream {
            reason: "more than 2^32 chunks",
        })?;
        self.done = last;
        Ok(buf)
    }

    /// The chunk root, only once the final chunk was opened (else the stream was truncated).
    pub fn finish(self) -> Result<[u8; 32]> {
        if !self.done {
            return Err(Error::ChunkStream {
                reason: "stream ended before its final chunk (truncated)",
            });
        }
        Ok(self.root.finalize().into())
    }
}

/// Seals a whole buffer as one chunked blob: `header || chunk_0 || … || chunk_n` (every chunk
/// but the last is `chunk_size + 16` bytes). Returns the blob and its chunk root.
pub fn seal_chunked<R: RngCore + CryptoRng>(
    key: &ContentKey,
    ctx: &Context<'_>,
    data: &[u8],
    chunk_size: u32,
    rng: &mut R,
) -> Result<(Vec<u8>, [u8; 32])> {
    let mut s = ChunkSealer::new(key, ctx, chunk_size, rng)?;
    let size = chunk_size as usize;
    let n_chunks = data.len().div_ceil(size).max(1);
    let mut out = Vec::with_capacity(ChunkHeader::LEN + data.len() + n_chunks * TAG_LEN);
    out.extend_from_slice(&s.header().to_bytes());
    if data.is_empty() {
        out.extend_from_slice(&s.seal_chunk(&[], true)?);
    }
    let mut chunks = data.chunks(size).peekable();
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        out.extend_from_slice(&s.seal_chunk(c, last)?);
    }
    Ok((out, s.root()))
}

/// Opens a blob made by [`seal_chunked`]; returns the plaintext and the chunk root.
pub fn open_chunked(
    key: &ContentKey,
    ctx: &Context<'_>,
    blob: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, [u8; 32])> {
    let mut r = Reader::new(blob, "chunked blob");
    let header = ChunkHeader::decode(&mut r)?;
    let body = r.rest();
    let mut o = ChunkOpener::new(key, ctx, header);
    let step = o.sealed_chunk_len();
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut rest = body;
    loop {
        // The final chunk is the one that leaves nothing behind; a stream cut exactly at a chunk
        // boundary therefore presents a full chunk as last and fails to open.
        let take = rest.len().min(step);
        let (c, tail) = rest.split_at(take);
        let last = tail.is_empty();
        out.extend_from_slice(&o.open_chunk(c, last)?);
        rest = tail;
        if last {
            break;
        }
    }
    let root = o.finish()?;
    Ok((out, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn key() -> ContentKey {
        ContentKey::random(&mut OsRng)
    }

    #[test]
    fn context_is_bound() {
        let k = key();
        let ctx = Context::new(ObjectKind::RecordBlob, b"blob-1", 3);
        let env = seal(&k, &ctx, b"hello", &mut OsRng);
        assert_eq!(open(&k, &ctx, &env).expect("opens").as_slice(), b"hello");
        for other in [
            Context::new(ObjectKind::Manifest, b"blob-1", 3),
            Context::new(ObjectKind::RecordBlob, b"blob-2", 3),
            Context::new(ObjectKind::RecordBlob, b"blob-1", 4),
        ] {
            assert!(matches!(open(&k, &other, &env), Err(Error::Decrypt { .. })));
        }
        assert!(open(&key(), &ctx, &env).is_err());
    }

    #[test]
    fn chunked_roundtrip_and_attacks() {
        let k = key();
        let ctx = Context::new(ObjectKind::Attachment, b"att", 1);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (blob, root) = seal_chunked(&k, &ctx, &data, 1024, &mut OsRng).expect("seals");
        let (pt, root2) = open_chunked(&k, &ctx, &blob).expect("opens");
        assert_eq!(pt.as_slice(), data.as_slice());
        assert_eq!(root, root2);
        let step = 1024 + TAG_LEN;
        let h = ChunkHeader::LEN;
        // Truncated at a chunk boundary.
        assert!(open_chunked(&k, &ctx, &blob[..h + 3 * step]).is_err());
        // Truncated mid-chunk.
        assert!(open_chunked(&k, &ctx, &blob[..blob.len() - 5]).is_err());
        // Two chunks swapped.
        let mut swapped = blob.clone();
        let (a, b) = (h, h + step);
        let c0 = blob[a..a + step].to_vec();
        let c1 = blob[b..b + step].to_vec();
        swapped[a..a + step].copy_from_slice(&c1);
        swapped[b..b + step].copy_from_slice(&c0);
        assert!(open_chunked(&k, &ctx, &swapped).is_err());
        // A chunk from another stream under the same key and context.
        let (other, _) = seal_chunked(&k, &ctx, &data, 1024, &mut OsRng).expect("seals");
        let mut mixed = blob.clone();
        mixed[b..b + step].copy_from_slice(&other[b..b + step]);
        assert!(open_chunked(&k, &ctx, &mixed).is_err());
        // Appended garbage.
        let mut longer = blob.clone();
        longer.extend_from_slice(&[0u8; 17]);
        assert!(open_chunked(&k, &ctx, &longer).is_err());
        // Empty input.
        let (empty, _) = seal_chunked(&k, &ctx, &[], 1024, &mut OsRng).expect("seals");
        assert!(open_chunked(&k, &ctx, &empty).expect("opens").0.is_empty());
    }
}
