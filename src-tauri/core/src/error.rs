//! The one error type of `carekey-core`.
//!
//! Messages name the structure and the rule that failed, never a value: no key, token, id or
//! plaintext ever reaches an error string (docs/protocol.md "Primitives").

/// Everything that can go wrong in the core. Each variant says how it can happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the structure did: a truncated download, a cut-off QR scan.
    #[error("{what}: input is truncated")]
    Truncated {
        /// The structure being decoded.
        what: &'static str,
    },
    /// Bytes were left over after a complete structure: concatenated or padded input, or a
    /// structure of another type or version.
    #[error("{what}: {extra} unexpected trailing byte(s)")]
    TrailingBytes {
        /// The structure being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// The version byte is not one this build understands: data from a newer app, or garbage.
    #[error("{what}: unsupported version {version}")]
    UnknownVersion {
        /// The structure being decoded.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// A field is out of its allowed range or shape (bad enum tag, over-long list, invalid
    /// UTF-8, unsorted scope): corrupted or hand-crafted input.
    #[error("{what}: malformed ({reason})")]
    Malformed {
        /// The structure being decoded.
        what: &'static str,
        /// Which rule the input broke.
        reason: &'static str,
    },
    /// Text encoding (QR payload, base32/base64) is invalid: a mis-scan or a foreign QR code.
    #[error("{what}: not a valid encoding")]
    Encoding {
        /// The structure being decoded.
        what: &'static str,
    },
    /// Authenticated decryption failed: wrong key, tampered ciphertext, or a ciphertext moved to
    /// another object id, kind, share or epoch (its AAD no longer matches).
    #[error("{what}: decryption failed (wrong key, tampered data, or wrong context)")]
    Decrypt {
        /// The sealed structure.
        what: &'static str,
    },
    /// A chunked stream ended without its final chunk, or had data after it.
    #[error("chunked stream: {reason}")]
    ChunkStream {
        /// What was wrong with the stream.
        reason: &'static str,
    },
    /// A signature does not verify under the key it claims: forged, tampered, or signed over
    /// another transcript or domain.
    #[error("{what}: signature is invalid")]
    BadSignature {
        /// The signed structure.
        what: &'static str,
    },
    /// A public key is malformed, not canonical, or of small order.
    #[error("{what}: invalid public key")]
    InvalidKey {
        /// Where the key was found.
        what: &'static str,
    },
    /// An X25519 exchange produced the all-zero output: the peer sent a low-order point.
    #[error("key exchange produced the all-zero shared secret (low-order peer key)")]
    ZeroSharedSecret,
    /// The object's expiry time has passed (pairing QR, grant, delegation).
    #[error("{what}: expired")]
    Expired {
        /// The expired structure.
        what: &'static str,
    },
    /// The pairing already accepted a reply, so its one-time secret is gone; or the state is
    /// being used out of order.
    #[error("pairing is closed: start again with a new QR code")]
    PairingClosed,
    /// A blob's ciphertext hash differs from the one in the patient-signed manifest: a blob
    /// swapped by the relay or forged by another grantee who holds the content key.
    #[error("blob does not match the signed manifest")]
    HashMismatch,
    /// A manifest (or backup, or epoch) older than one already seen: a rollback attempt.
    #[error("{what}: version {got} is older than the newest seen ({have})")]
    Rollback {
        /// The versioned structure.
        what: &'static str,
        /// Newest version already seen.
        have: u64,
        /// Version offered.
        got: u64,
    },
    /// A delegation link breaks a chain rule: scope widened, expiry extended, depth not
    /// decreasing, or parent key not matching the previous link.
    #[error("delegation link {index}: {reason}")]
    Delegation {
        /// Zero-based position of the first bad link in the chain.
        index: usize,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A relationship message with a sequence number not above the highest already accepted:
    /// a replay or a reordering.
    #[error("message replayed or out of order (sequence {got}, last accepted {highest})")]
    Replay {
        /// Highest sequence number accepted so far.
        highest: u64,
        /// Sequence number received.
        got: u64,
    },
    /// A message was signed for another recipient or relationship and re-addressed.
    #[error("message is addressed to another recipient or relationship")]
    WrongRecipient,
    /// An audit chain entry does not link to its predecessor, or its head signature fails.
    #[error("audit chain broken at entry {seq}: {reason}")]
    AuditChain {
        /// Sequence number of the first bad entry.
        seq: u64,
        /// What is wrong there.
        reason: &'static str,
    },
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// Result alias of the core.
pub type Result<T, E = Error> = core::result::Result<T, E>;
