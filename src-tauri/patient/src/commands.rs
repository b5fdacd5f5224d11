//! The commands, one per session method. Each takes its argument as raw JSON (`args`), parses
//! it into the [`carekey_app::ipc`] type with [`crate::parse`], and calls the session, which
//! validates it.

use carekey_app::AppError;
use carekey_app::display::{CATEGORY_ORDER, category_label};
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
        restore_vault,
        unlock,
        lock,
        set_auto_lock,
        change_passphrase,
        check_relay,
        set_relay,
        set_enrollment_key,
        backup_now,
        export_bundle,
        timeline,
        search,
        get_record,
        record_files,
        open_attachment,
        trends,
        add_record,
        import_file,
        start_share,
        new_qr,
        wait_for_doctor,
        answer_doctor,
        shares,
        access_log,
        revoke,
        check_inbox,
        answer_note,
        forward_requests,
        answer_forward,
        delegations,
        revoke_delegation,
        publish_link,
        links,
        delete_link,
        trusted_clinics,
        trust_clinic,
        untrust_clinic,
        cancel,
    ]
}

/// One timeline category as the tabs show it.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryInfo {
    /// The category as `TimelineRow::category` spells it.
    pub category: Value,
    /// Its tab title.
    pub label: &'static str,
}

/// What the first screen needs to choose between onboarding, unlock and the records.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    /// A vault file exists on this device.
    pub vault_exists: bool,
    /// It is open and unlocked.
    pub unlocked: bool,
    /// What onboarding's relay field starts with (`CAREKEY_RELAY_URL`), empty if unset.
    pub default_relay_url: String,
    /// The timeline's categories in tab order, with their titles.
    pub categories: Vec<CategoryInfo>,
    /// The settings (relay, auto-lock, last backup) when unlocked.
    pub settings: Option<carekey_app::session::Settings>,
}

/// The app status (see [`AppStatus`]).
pub async fn status(shell: &crate::Shell) -> Result<AppStatus, AppError> {
    let categories = CATEGORY_ORDER
        .iter()
        .map(|c| {
            Ok(CategoryInfo {
                category: json(c)?,
                label: category_label(*c),
            })
        })
        .collect::<Result<_, AppError>>()?;
    let unlocked = shell.app.is_unlocked().await;
    Ok(AppStatus {
        vault_exists: shell.app.vault_exists(),
        unlocked,
        settings: if unlocked {
            shell.app.settings().await.ok()
        } else {
            None
        },
        default_relay_url: shell.options.relay_url.clone().unwrap_or_default(),
        categories,
    })
}

#[tauri::command]
async fn app_status(state: Cmd<'_>) -> Out {
    json(status(&state).await?)
}

#[tauri::command]
async fn create_vault(state: Cmd<'_>, args: Value) -> Out {
    let a: ipc::CreateVault = parse(args)?;
    #[derive(Serialize)]
    struct Created {
        words: String,
    }
    json(Created {
        words: state.app.create_vault(a).await?,
    })
}

/// Onboarding on a new device from the 24 words and the relay backup; unlocked after.
#[tauri::command]
async fn restore_vault(state: Cmd<'_>, args: Value) -> Out {
    state.app.restore_vault(parse(args)?).await?;
    json(status(&state).await?)
}

#[tauri::command]
async fn change_passphrase(state: Cmd<'_>, args: Value) -> Out {
    state.app.change_passphrase(parse(args)?).await?;
    Ok(Value::Null)
}

#[tauri::command]
async fn check_relay(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.check_relay(parse(args)?).await?)
}

#[tauri::command]
async fn set_relay(state: Cmd<'_>, args: Value) -> Out {
    state.app.set_relay(parse(args)?).await?;
    json(state.app.settings().await?)
}

#[tauri::command]
async fn backup_now(state: Cmd<'_>) -> Out {
    json(state.app.backup_now().await?)
}

/// How many records were written (the file is plain FHIR: the screen says so).
#[tauri::command]
async fn export_bundle(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.export_bundle(parse(args)?).await?)
}

#[tauri::command]
async fn new_qr(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.new_qr(parse(args)?).await?)
}

#[tauri::command]
async fn unlock(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.unlock(parse(args)?).await?)
}

#[tauri::command]
async fn lock(state: Cmd<'_>) -> Out {
    state.app.lock().await;
    Ok(Value::Null)
}

#[tauri::command]
async fn set_auto_lock(state: Cmd<'_>, args: Value) -> Out {
    state.app.set_auto_lock(parse(args)?).await?;
    json(state.app.settings().await?)
}

#[tauri::command]
// Thousands of rows: serialized once, straight to the web view (no `Value` in between).
async fn timeline(state: Cmd<'_>) -> Result<Vec<carekey_app::display::TimelineRow>, AppError> {
    state.app.timeline().await
}

#[tauri::command]
async fn search(
    state: Cmd<'_>,
    args: Value,
) -> Result<Vec<carekey_app::display::TimelineRow>, AppError> {
    state.app.search(parse(args)?).await
}

#[tauri::command]
async fn get_record(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.record(parse(args)?).await?)
}

#[tauri::command]
async fn record_files(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.record_files(parse(args)?).await?)
}

/// The file's bytes as a binary answer (an `ArrayBuffer` in the web view, no base64).
#[tauri::command]
async fn open_attachment(state: Cmd<'_>, args: Value) -> Result<tauri::ipc::Response, AppError> {
    let file = state.app.attachment(parse(args)?).await?;
    Ok(tauri::ipc::Response::new(file.bytes.to_vec()))
}

#[tauri::command]
async fn trends(state: Cmd<'_>) -> Out {
    json(state.app.trends().await?)
}

#[tauri::command]
async fn add_record(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.add_record(parse(args)?).await?)
}

#[tauri::command]
async fn import_file(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.import_file(parse(args)?).await?)
}

#[tauri::command]
async fn start_share(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.start_share(parse(args)?).await?)
}

#[tauri::command]
async fn wait_for_doctor(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.wait_for_doctor(parse(args)?).await?)
}

#[tauri::command]
async fn answer_doctor(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.answer_doctor(parse(args)?).await?)
}

#[tauri::command]
async fn shares(state: Cmd<'_>) -> Out {
    json(state.app.shares().await?)
}

/// The verified access log of one share, in words, with its security warnings.
#[tauri::command]
async fn access_log(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.access_log(parse(args)?).await?)
}

#[tauri::command]
async fn revoke(state: Cmd<'_>, args: Value) -> Out {
    state.app.revoke(parse(args)?).await?;
    json(state.app.shares().await?)
}

/// The notes kept in the vault. The background loop does the relay long-poll (and emits
/// `inbox_changed`); polling here as well would race it for the same mailbox batch.
#[tauri::command]
async fn check_inbox(state: Cmd<'_>) -> Out {
    json(state.app.inbox().await?)
}

#[tauri::command]
async fn answer_note(state: Cmd<'_>, args: Value) -> Out {
    state.app.answer_note(parse(args)?).await?;
    json(state.app.inbox().await?)
}

/// Colleagues a doctor asked to forward to (policy `ask`), waiting for the patient's answer.
#[tauri::command]
async fn forward_requests(state: Cmd<'_>) -> Out {
    json(state.app.forward_requests().await?)
}

#[tauri::command]
async fn answer_forward(state: Cmd<'_>, args: Value) -> Out {
    state.app.answer_forward(parse(args)?).await?;
    json(state.app.forward_requests().await?)
}

/// Everyone the doctors of one share passed the records on to (a tamper alert when the
/// relay registered one the patient cannot account for).
#[tauri::command]
async fn delegations(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.delegations(parse(args)?).await?)
}

/// Revokes one colleague (and their own delegates); answers with the share's tree after it.
#[tauri::command]
async fn revoke_delegation(state: Cmd<'_>, args: Value) -> Out {
    let args: ipc::RevokeDelegation = parse(args)?;
    let share = args.share.clone();
    state.app.revoke_delegation(args).await?;
    json(state.app.delegations(ipc::IdRef { id: share }).await?)
}

/// Publishes a share as a SMART Health Link; answers with its QR, passcode and warning.
#[tauri::command]
async fn publish_link(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.publish_link(parse(args)?).await?)
}

/// The links published from one share.
#[tauri::command]
async fn links(state: Cmd<'_>, args: Value) -> Out {
    json(state.app.links(parse(args)?).await?)
}

/// Deletes a published link (no new downloads).
#[tauri::command]
async fn delete_link(state: Cmd<'_>, args: Value) -> Out {
    state.app.delete_link(parse(args)?).await?;
    json(())
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
    json(state.app.settings().await?)
}
