//! The app's own saved values, sealed in the vault's app state (docs/vault.md "App state"):
//! settings, and the small registries the screens list (shares made, notes waiting).
//!
//! Each is a JSON object with a `version` field, stored under a fixed name; an unknown version
//! is refused rather than guessed at.

use carekey_vault::Vault;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{AppError, Result};

/// Version of every value below.
pub(crate) const APP_STATE_VERSION: u32 = 1;

/// State name of [`Settings`].
pub(crate) const SETTINGS: &str = "carekey/app/settings/v1";

/// What the Settings and Profile screens change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Always 1 (the version of the app's saved values).
    pub version: u32,
    /// The name on this device's card.
    pub name: String,
    /// Licence id (doctor).
    pub licence: Option<String>,
    /// The relay this device uses for new shares and backups.
    pub relay_url: String,
    /// Idle seconds before the vault locks (`None` = never).
    pub auto_lock_secs: Option<u64>,
    /// When the last backup reached the relay (unix seconds).
    pub last_backup_at: Option<u64>,
    /// Base URLs of the closed relays this device holds an enrollment key for (the keys
    /// themselves are kept apart, in their own sealed app state, and never shown).
    #[serde(default)]
    pub enrolled_relays: Vec<String>,
}

impl Settings {
    /// Fresh settings of a new vault.
    pub fn new(name: String, licence: Option<String>, relay_url: String) -> Self {
        Self {
            version: APP_STATE_VERSION,
            name,
            licence,
            relay_url,
            auto_lock_secs: Some(300),
            last_backup_at: None,
            enrolled_relays: Vec::new(),
        }
    }
}

/// State name of the enrollment keys (docs/relay.md "Enrollment").
pub(crate) const ENROLLMENT: &str = "carekey/app/enrollment/v1";

/// The operators' enrollment keys of closed relays, by relay base URL.
#[derive(Default, Serialize, Deserialize)]
struct Enrollment {
    version: u32,
    keys: Vec<EnrolledRelay>,
}

#[derive(Serialize, Deserialize)]
struct EnrolledRelay {
    relay_url: String,
    key: String,
}

impl Drop for EnrolledRelay {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// Every enrollment key held: (relay base URL, key).
pub(crate) fn enrollment_keys(
    vault: &mut Vault,
) -> Result<Vec<(String, zeroize::Zeroizing<String>)>> {
    let e: Enrollment = load(vault, ENROLLMENT)?.unwrap_or_default();
    Ok(e.keys
        .into_iter()
        .map(|mut k| {
            let key = zeroize::Zeroizing::new(std::mem::take(&mut k.key));
            (std::mem::take(&mut k.relay_url), key)
        })
        .collect())
}

/// Stores (or with `None` removes) the enrollment key of the relay at base URL `relay_url`,
/// and lists the relays holding one in [`Settings::enrolled_relays`].
pub(crate) fn set_enrollment_key(
    vault: &mut Vault,
    relay_url: &str,
    key: Option<String>,
) -> Result<()> {
    let mut e: Enrollment = load(vault, ENROLLMENT)?.unwrap_or_default();
    e.version = APP_STATE_VERSION;
    e.keys.retain(|k| k.relay_url != relay_url);
    if let Some(key) = key {
        e.keys.push(EnrolledRelay {
            relay_url: relay_url.to_owned(),
            key,
        });
    }
    save(vault, ENROLLMENT, &e)?;
    let mut s: Settings = load(vault, SETTINGS)?.ok_or_else(corrupt)?;
    s.enrolled_relays = e.keys.iter().map(|k| k.relay_url.clone()).collect();
    save(vault, SETTINGS, &s)
}

/// The relay client for `relay_url`, with its enrollment key when this device holds one (sent
/// to that relay only).
pub(crate) fn relay(vault: &mut Vault, relay_url: &str) -> Result<carekey_client::relay::Relay> {
    let relay = carekey_client::relay::Relay::new(relay_url)?;
    let key = enrollment_keys(vault)?
        .into_iter()
        .find(|(url, _)| url == relay.base());
    Ok(match key {
        Some((_, k)) => relay.with_enrollment_key(&k)?,
        None => relay,
    })
}

fn corrupt() -> AppError {
    AppError::new(
        "tampered",
        "the app's saved settings on this device cannot be read",
    )
}

/// Reads a versioned value, `None` when never written.
pub(crate) fn load<T: DeserializeOwned>(vault: &mut Vault, name: &str) -> Result<Option<T>> {
    let Some(bytes) = vault.get_state(name)? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
    if v.get("version").and_then(serde_json::Value::as_u64) != Some(u64::from(APP_STATE_VERSION)) {
        return Err(corrupt());
    }
    serde_json::from_value(v).map(Some).map_err(|_| corrupt())
}

/// Writes a versioned value (sealed by the vault, bound to its name).
pub(crate) fn save<T: Serialize>(vault: &mut Vault, name: &str, value: &T) -> Result<()> {
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec(value).map_err(|_| corrupt())?);
    vault.put_state(name, &bytes)?;
    Ok(())
}
