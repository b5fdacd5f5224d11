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
        }
    }
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
