//! The commands, one per session method. Each takes its argument as raw JSON (`args`), parses
//! it into the [`carekey_app::ipc`] type with [`crate::parse`], and calls the session, which
//! validates it.

use carekey_app::AppError;
use carekey_app::ipc::{self, Validate};
use serde::Serialize;
use serde_json::Value;

use crate::{Cmd, json, parse};

type Out = Result<Value, AppError>;

/// The handler registering every command of [`crate::COMMAND_NAMES`].
pub fn handler<R: tauri::Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static
{
    tauri::generate_handler![
        app_status,
        create_vault,
        unlock,
        lock,
        profile,
        scan_text,
        scan_image,
        scan_frame,
        open_smart_link,
        wait_for_grant,
        refresh_patient,
        patients,
        chart,
        get_chart_record,
        open_attachment,
        write_back,
        sent_notes,
        colleague_invite,
        set_enrollment_key,
        wait_for_introduction,
        read_invite,
        forward,
        purge_expired,
        trusted_clinics,
        trust_clinic,
        untrust_clinic,
        import_attestation,
        cancel,
    ]
}

/// What the first screen needs to choose between onboarding, unlock and the patient list.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    /// A vault file exists on this device.
    pub vault_exists: bool,
    /// It is open and unlocked.
    pub unlocked: bool,
    /// What onboarding's relay field starts with (`CAREKEY_RELAY_URL`), empty if unset.
    pub default_relay_url: String,
}

/// The app status (see [`AppStatus`]).
pub async fn status(shell: &crate::Shell) -> AppStatus {
    AppStatus {
        vault_exists: shell.app.vault_exists(),
        unlocked: shell.app.is_unlocked().await,
        default_relay_url: shell.options.relay_url.clone().unwrap_or_default(),
    }
}

/// `create_vault`'s answer: the 24 words, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The recovery phrase.
    pub words: String,
}

#[tauri::command]
async fn app_status(state: Cmd<'_>) -> Out {
    json(status(&state).await)
}

#[tauri::command]
async fn create_vault(state: Cmd<'_>, args: Value) -> Out {
    let a: ipc::CreateVault = parse(args)?;
    json(Created {
        words: state.app.create_vault(a).await?,
    })
}

#[tauri::command]
async fn unlock(state: Cmd<'_>, args: Value) -> Out {
    state.app.unlock(parse(args)?).await?;
    Ok(Value::Null)
}

#[tauri::command]
async fn lock(state: Cmd<'_>) -> Out {
    state.app.lock().await;
    Ok(Value::Null)
}

#[tauri::command]
async fn profile(state: Cmd<'_>) -> Out {
    json(state.app.profile().await?)
}

#[tauri::command]
async fn scan_text(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.scan_text(parse(args)?).await?)
}

#[tauri::command]
async fn scan_image(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.scan_image(parse(args)?).await?)
}

#[tauri::command]
async fn scan_frame(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.scan_frame(parse(args)?).await?)
}

/// A SMART Health Link or Card (docs/shl.md "In the doctor app").
#[tauri::command]
async fn open_smart_link(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.open_smart_link(parse(args)?).await?)
}

#[tauri::command]
async fn wait_for_grant(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.wait_for_grant(parse(args)?).await?)
}

#[tauri::command]
async fn refresh_patient(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.refresh_patient(parse(args)?).await?)
}

#[tauri::command]
async fn patients(state: Cmd<'_>) -> Out {
    json(state.app.patients().await?)
}

#[tauri::command]
// Thousands of rows: serialized once, straight to the web view (no `Value` in between).
async fn chart(state: Cmd<'_>, args: Value) -> Result<carekey_app::session::ChartView, AppError> {
    state.app.chart(parse(args)?).await
}

#[tauri::command]
async fn get_chart_record(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.chart_record(parse(args)?).await?)
}

/// The file's bytes as a binary answer (an `ArrayBuffer` in the web view, no base64).
#[tauri::command]
async fn open_attachment(state: Cmd<'_>, args: Value) -> Result<tauri::ipc::Response, AppError> {
    let file = state.app.attachment(parse(args)?).await?;
    Ok(tauri::ipc::Response::new(file.bytes.to_vec()))
}

#[tauri::command]
async fn write_back(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.write_back(parse(args)?).await?)
}

#[tauri::command]
async fn sent_notes(state: Cmd<'_>) -> Out {
    json(state.app.sent_notes().await?)
}

#[tauri::command]
async fn colleague_invite(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.colleague_invite(parse(args)?).await?)
}

#[tauri::command]
async fn wait_for_introduction(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.wait_for_introduction(parse(args)?).await?)
}

#[tauri::command]
async fn read_invite(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.read_invite(parse(args)?).await?)
}

#[tauri::command]
async fn forward(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.forward(parse(args)?).await?)
}

#[tauri::command]
async fn purge_expired(state: Cmd<'_>) -> Out {
    json(state.app.purge_expired().await?)
}

/// The clinic keys this device trusts for card attestations.
#[tauri::command]
async fn trusted_clinics(state: Cmd<'_>) -> Out {
    json(state.app.trusted_clinics().await?)
}

/// Adds a clinic key (scanned or pasted `CAREKEY-CLINIC:` text); answers with the list.
#[tauri::command]
async fn trust_clinic(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.trust_clinic(parse(args)?).await?)
}

/// Takes a clinic key off the trust list; answers with the list.
#[tauri::command]
async fn untrust_clinic(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.untrust_clinic(parse(args)?).await?)
}

/// Imports a clinic's attestation of this device's card; answers with the profile.
#[tauri::command]
async fn import_attestation(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.import_attestation(parse(args)?).await?)
}

#[tauri::command]
async fn cancel(state: Cmd<'_>, args: Value) -> Out {
    let a: ipc::IdRef = parse(args)?;
    a.validate()?;
    state.app.operations().cancel(&a.id)?;
    Ok(Value::Null)
}

#[tauri::command]
async fn set_enrollment_key(state: Cmd<'_>, args: Value) -> Out {
    state.app.set_enrollment_key(parse(args)?).await?;
    json(state.app.profile().await?)
}
