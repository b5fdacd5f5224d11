//! The one error type of the app layer: what reaches a UI as `{code, message}`.
//!
//! Codes are stable strings the UI switches on: the client's ([`ClientError::code`]), the
//! vault's ([`VaultError::code`]) and the app's own (listed on [`AppError`]). Messages are
//! written for a patient or a clinician and never carry a key, token, id or patient datum: the
//! client and vault errors already hold to that, and the app's own messages are fixed strings.

use carekey_client::ClientError;
use carekey_vault::VaultError;
use serde::{Deserialize, Serialize};

/// An error as the UI receives it.
///
/// The app's own codes:
/// - `invalid_input`: an argument failed [`crate::validate`] (the message names the field).
/// - `not_found`: the id names nothing this device knows (a stale screen).
/// - `no_vault` / `vault_exists`: onboarding in the wrong state.
/// - `busy`: a long operation of the same kind is already running.
/// - `not_supported`: a QR or file kind this build cannot open yet.
/// - `no_qr`, `image_unreadable`, `image_too_large`: a picture given to the QR decoder had no
///   code, was not a PNG/JPEG, or was over the size limits ([`crate::qr`]).
/// - `file_damaged`: a document's inline data is not base64, so the viewer has nothing to show.
/// - `locked`: the command needs the unlocked vault.
/// - `declined`, `already_used`, `expired`: the other side's answer, from the client.
/// - `internal`: a background task failed in a way the user cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct AppError {
    /// Stable machine-readable code.
    pub code: String,
    /// A sentence the user can read.
    pub message: String,
}

impl AppError {
    /// An error with the given code and message (both fixed strings of this crate).
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// An argument failed validation; `message` says which field and why, never its value.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    /// The id names nothing this device knows.
    pub fn not_found(what: &str) -> Self {
        Self::new("not_found", format!("{what} was not found on this device"))
    }

    /// A kind of input this build cannot open yet.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new("not_supported", message)
    }

    /// A background task failed (a panic or a dropped worker): nothing the user can act on.
    pub fn internal() -> Self {
        Self::new(
            "internal",
            "something went wrong inside the app; nothing was changed",
        )
    }
}

impl From<ClientError> for AppError {
    fn from(e: ClientError) -> Self {
        let message = match &e {
            // The client's own messages are written for the UI already; the vault's go through
            // the vault mapping below so both paths read alike.
            ClientError::Vault(v) => return AppError::from_vault(v),
            ClientError::Conflict { .. } => {
                "someone else answered first; start again with a new QR".to_owned()
            }
            other => other.to_string(),
        };
        Self::new(e.code(), message)
    }
}

impl AppError {
    fn from_vault(e: &VaultError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// SMART Health Links and Cards (docs/shl.md): the crate's own codes, except the two the doctor
/// app's passcode form switches on (`passcode_required`, `passcode_rejected` with the attempts
/// left) and an expired link, which get sentences for the clinician. `carekey-shl`'s messages
/// never hold a key, passcode, URL or decrypted content.
impl From<carekey_shl::ShlError> for AppError {
    fn from(e: carekey_shl::ShlError) -> Self {
        use carekey_shl::ShlError as S;
        match &e {
            S::PasscodeRequired => Self::new(
                "passcode_required",
                "this SMART Health Link is protected by a passcode: ask the patient for it",
            ),
            S::PasscodeRejected { remaining_attempts } => Self::new(
                "passcode_rejected",
                match remaining_attempts {
                    Some(n) => format!("the passcode was not accepted ({n} attempts left)"),
                    None => "the passcode was not accepted".to_owned(),
                },
            ),
            S::Expired { .. } => Self::new(
                "expired",
                "this SMART Health Link has expired: ask the patient for a new one",
            ),
            S::ApiAccessNotSupported => Self::not_supported(
                "this SMART Health Link offers FHIR API access \
                 (application/smart-api-access), which this app does not support",
            ),
            other => Self::new(other.code(), other.to_string()),
        }
    }
}

impl From<VaultError> for AppError {
    fn from(e: VaultError) -> Self {
        Self::from_vault(&e)
    }
}

/// Result alias of the app layer.
pub type Result<T, E = AppError> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_codes_pass_through() {
        let e = AppError::from(ClientError::AccessEnded);
        assert_eq!(e.code, "access_ended");
        let e = AppError::from(ClientError::Vault(VaultError::Locked));
        assert_eq!(e.code, VaultError::Locked.code());
    }

    #[test]
    fn serializes_as_code_and_message() {
        let v = serde_json::to_value(AppError::invalid_input("passphrase: too short"))
            .expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"code": "invalid_input", "message": "passphrase: too short"})
        );
    }
}
