//! Key schedule of a vault: passphrase → root (Argon2id wrap), root → vault keys (HKDF), blind
//! indexes (HMAC-SHA256 per table), and the recovery phrase (BIP39 of the root).

use argon2::{Algorithm, Argon2, Params, Version};
use carekey_core::envelope::{self, Context, Envelope, ObjectKind};
use carekey_core::keys::{DeviceIdentity, RootSecret, SymmetricKey};
use carekey_core::label;
use carekey_core::wire::{Reader, Wire, Writer};
use hmac::{Hmac, Mac};
use rand_core::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Result, VaultError};

/// Vault-only labels (HKDF sub-labels and AEAD ids), kept distinct from the core's.
pub mod vlabel {
    /// AEAD id of the passphrase-wrapped root secret (followed by the vault id).
    pub const ROOT_WRAP_ID: &[u8] = b"carekey/v1/vault/root-wrap";
    /// AEAD id of the key-check value (followed by the vault id).
    pub const CHECK_ID: &[u8] = b"carekey/v1/vault/check";
    /// Plaintext of the key-check value.
    pub const CHECK_PLAINTEXT: &[u8] = b"carekey vault key check v1";
    /// Blind-index table names appended to `KDF_BLIND_INDEX`.
    pub const TABLE_RECORDS: &str = "records";
    /// Terms table (type, category, code).
    pub const TABLE_TERMS: &str = "terms";
    /// Share sources table.
    pub const TABLE_SOURCES: &str = "sources";
    /// App state table.
    pub const TABLE_APP_STATE: &str = "app_state";
}

/// Argon2id cost parameters, stored in the vault header so they can be raised later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation with one lane: phones).
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests only; `create` accepts them, apps must use the default.
    pub const INSECURE_TEST: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    fn check(&self) -> Result<()> {
        if self.m_kib < 64 || self.t < 1 || self.p < 1 || self.p > 16 || self.m_kib > 4 << 20 {
            return Err(VaultError::InvalidArgument(
                "Argon2id parameters out of range",
            ));
        }
        Ok(())
    }
}

const KDF_HEADER_VERSION: u8 = 1;
const ALG_ARGON2ID_13: u8 = 1;

/// The `kdf` header row: version, algorithm, parameters, salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KdfHeader {
    pub params: KdfParams,
    pub salt: [u8; 16],
}

impl Wire for KdfHeader {
    const WHAT: &'static str = "vault kdf header";
    fn encode(&self, w: &mut Writer) {
        w.u8(KDF_HEADER_VERSION);
        w.u8(ALG_ARGON2ID_13);
        w.u32(self.params.m_kib);
        w.u32(self.params.t);
        w.u32(self.params.p);
        w.raw(&self.salt);
    }
    fn decode(r: &mut Reader<'_>) -> carekey_core::Result<Self> {
        r.version(KDF_HEADER_VERSION)?;
        if r.u8()? != ALG_ARGON2ID_13 {
            return Err(r.malformed("unknown password hash algorithm"));
        }
        Ok(Self {
            params: KdfParams {
                m_kib: r.u32()?,
                t: r.u32()?,
                p: r.u32()?,
            },
            salt: r.array()?,
        })
    }
}

impl KdfHeader {
    pub fn new(params: KdfParams) -> Result<Self> {
        params.check()?;
        let mut salt = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut salt);
        Ok(Self { params, salt })
    }

    /// Argon2id(passphrase, salt) → the key that wraps the root secret.
    pub fn passphrase_key(&self, passphrase: &str) -> Result<SymmetricKey> {
        self.params.check()?;
        let params = Params::new(self.params.m_kib, self.params.t, self.params.p, Some(32))
            .map_err(|_| VaultError::InvalidArgument("Argon2id parameters out of range"))?;
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        a.hash_password_into(passphrase.as_bytes(), &self.salt, out.as_mut())
            .map_err(|_| VaultError::InvalidArgument("Argon2id failed"))?;
        Ok(SymmetricKey::from_bytes(*out))
    }
}

fn ctx_id(prefix: &[u8], vault_id: &[u8; 16]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(vault_id);
    v
}

/// Seals the root secret under the passphrase key.
pub(crate) fn wrap_root(kek: &SymmetricKey, vault_id: &[u8; 16], root: &RootSecret) -> Envelope {
    let id = ctx_id(vlabel::ROOT_WRAP_ID, vault_id);
    envelope::seal(
        kek,
        &Context::new(ObjectKind::VaultKeyWrap, &id, 0),
        root.expose_secret(),
        &mut OsRng,
    )
}

/// Opens the wrapped root; failure means a wrong passphrase (or a tampered header).
pub(crate) fn unwrap_root(
    kek: &SymmetricKey,
    vault_id: &[u8; 16],
    env: &Envelope,
) -> Result<RootSecret> {
    let id = ctx_id(vlabel::ROOT_WRAP_ID, vault_id);
    let pt = envelope::open(kek, &Context::new(ObjectKind::VaultKeyWrap, &id, 0), env)
        .map_err(|_| VaultError::WrongPassphrase)?;
    let arr: [u8; 32] = pt
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::BadHeader("wrapped root has the wrong length"))?;
    Ok(RootSecret::from_bytes(arr))
}

/// A 32-byte MAC key for one blind-index table.
pub(crate) struct BlindKey(Zeroizing<[u8; 32]>);

impl BlindKey {
    fn derive(root: &RootSecret, table: &str) -> Self {
        let purpose = format!("{}/{}", label::KDF_BLIND_INDEX, table);
        Self(Zeroizing::new(*root.derive(&purpose, 0).expose_secret()))
    }
    /// HMAC-SHA256(key, data).
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .expect("HMAC accepts any key length");
        m.update(data);
        m.finalize().into_bytes().into()
    }
}

/// Every key of an unlocked vault; dropped (and zeroized) on lock.
pub(crate) struct VaultKeys {
    pub root: RootSecret,
    /// Seals vault-level values (audit bodies, sources, key check).
    pub vault: SymmetricKey,
    /// Wraps per-record and per-attachment content keys.
    pub wrap: SymmetricKey,
    pub bi_records: BlindKey,
    pub bi_terms: BlindKey,
    pub bi_sources: BlindKey,
    pub bi_state: BlindKey,
    pub identity: DeviceIdentity,
}

impl VaultKeys {
    pub fn from_root(root: RootSecret) -> Self {
        Self {
            vault: root.derive(label::KDF_VAULT, 0),
            wrap: root.derive(label::KDF_VAULT_WRAP, 0),
            bi_records: BlindKey::derive(&root, vlabel::TABLE_RECORDS),
            bi_terms: BlindKey::derive(&root, vlabel::TABLE_TERMS),
            bi_sources: BlindKey::derive(&root, vlabel::TABLE_SOURCES),
            bi_state: BlindKey::derive(&root, vlabel::TABLE_APP_STATE),
            identity: DeviceIdentity::from_root(&root),
            root,
        }
    }

    pub fn check_value(&self, vault_id: &[u8; 16]) -> Envelope {
        let id = ctx_id(vlabel::CHECK_ID, vault_id);
        envelope::seal(
            &self.vault,
            &Context::new(ObjectKind::VaultValue, &id, 0),
            vlabel::CHECK_PLAINTEXT,
            &mut OsRng,
        )
    }

    pub fn verify_check(&self, vault_id: &[u8; 16], env: &Envelope) -> bool {
        let id = ctx_id(vlabel::CHECK_ID, vault_id);
        envelope::open(
            &self.vault,
            &Context::new(ObjectKind::VaultValue, &id, 0),
            env,
        )
        .is_ok_and(|p| p.as_slice() == vlabel::CHECK_PLAINTEXT)
    }
}

impl std::fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultKeys(<redacted>)")
    }
}

/// The 24-word BIP39 (English) form of a vault's 32-byte root secret.
pub struct RecoveryPhrase(Zeroizing<String>);

impl std::fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryPhrase(<redacted>)")
    }
}

impl RecoveryPhrase {
    /// The phrase of a root secret.
    pub fn from_root(root: &RootSecret) -> Self {
        let m = bip39::Mnemonic::from_entropy(root.expose_secret())
            .expect("32 bytes is a valid BIP39 entropy length");
        let words: Vec<&str> = m.words().collect();
        Self(Zeroizing::new(words.join(" ")))
    }
    /// Parses 24 words (any case, any whitespace); checks the BIP39 checksum.
    pub fn parse(s: &str) -> Result<Self> {
        let norm = Zeroizing::new(
            s.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" "),
        );
        let m = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &norm)
            .map_err(|_| VaultError::InvalidPhrase)?;
        if m.word_count() != 24 {
            return Err(VaultError::InvalidPhrase);
        }
        Ok(Self(Zeroizing::new(norm.to_string())))
    }
    /// The words, space-separated: show once, never log.
    pub fn expose_words(&self) -> &str {
        &self.0
    }
    /// The root secret it encodes.
    pub fn root(&self) -> Result<RootSecret> {
        let m = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &self.0)
            .map_err(|_| VaultError::InvalidPhrase)?;
        let (mut arr, n) = m.to_entropy_array();
        if n != 32 {
            arr.iter_mut().for_each(|b| *b = 0);
            return Err(VaultError::InvalidPhrase);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(&arr[..32]);
        zeroize::Zeroize::zeroize(&mut arr);
        Ok(RootSecret::from_bytes(out))
    }
}
