//! SMART Health Links from the command line (issue 15; docs/cli.md "SMART Health Links"):
//! `carekey patient share --shl` publishes the share as a `shlink:/` any SHL viewer opens
//! (through the patient session, as the patient app does), and
//! `carekey doctor open 'shlink:/…'` opens one (from Carekey or any other SHL sharer) through
//! the doctor session's `open_smart_link_files`, the doctor app's own path, over a throwaway
//! doctor vault in a private temporary directory ([`crate::device`]).

use std::path::PathBuf;

use std::sync::Arc;

use carekey_app::events::NoEvents;
use carekey_app::ipc;
use carekey_app::session::PatientApp;
use carekey_client::progress::Cancel;

use crate::device::{Device, Profile};
use crate::doctor_cmd::{prepare_dir, write_private};
use crate::error::{CliError, Result};
use crate::identity::{Identity, now};
use crate::term::qr_art;

/// The relay URL of the throwaway doctor vault `doctor open` uses: a vault needs one, and
/// opening a SMART Health Link never talks to a Carekey relay (the link names its own server).
const NO_RELAY: &str = "http://127.0.0.1:9";

/// Seconds between two reads of the access log while waiting for a download.
const POLL_SECS: u64 = 2;

/// What `patient share --shl` publishes.
#[derive(Debug)]
pub struct PublishArgs {
    /// `Some(p)`: the passcode the patient chose; `None` with `no_passcode` false: a
    /// generated one.
    pub passcode: Option<String>,
    /// No passcode at all.
    pub no_passcode: bool,
    /// Failed attempts before the link dies.
    pub attempts: u32,
    /// Seconds the link lives (at most the share's lifetime).
    pub expires_in: u64,
    /// The link's label.
    pub label: Option<String>,
    /// The share's expiry: the link ends then at the latest.
    pub share_expires_at: u64,
    /// Seconds to wait for a first download, printing `DOWNLOADED:` lines (0: don't).
    pub wait: u64,
    /// Draw the QR on stderr.
    pub qr_art: bool,
}

/// Publishes `share` (hex, as the session's `start_share` returned it) as a SMART Health Link
/// through the patient session's `publish_link_with`, as the patient app's "Share as SMART
/// Health Link" runs it; prints `SHLINK:`, `PASSCODE:` and, while waiting, `DOWNLOADED:` or
/// `WRONG PASSCODE:` with the access log's sentence. Returns the JSON summary fields.
pub async fn publish(
    app: &PatientApp,
    share: &str,
    a: PublishArgs,
    cancel: &Cancel,
) -> Result<serde_json::Value> {
    let expires_at = now().saturating_add(a.expires_in).min(a.share_expires_at);
    let link = app
        .publish_link_with(
            ipc::PublishLink {
                share: share.to_owned(),
                passcode: !a.no_passcode,
                expires_in_secs: expires_at.saturating_sub(now()),
                label: a.label,
            },
            a.passcode,
            a.attempts,
        )
        .await?;
    outln!("SHLINK: {}", link.shlink);
    if let Some(p) = &link.passcode {
        outln!("PASSCODE: {p}");
    }
    if a.qr_art
        && let Some(art) = qr_art(&link.shlink)
    {
        errln!("{art}");
    }
    if let Some(note) = &link.left_out_note {
        errln!("{note}");
    }
    errln!("{}", link.warning);
    let mut downloads: Vec<String> = Vec::new();
    if a.wait > 0 {
        errln!("waiting up to {} s for the link to be opened", a.wait);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(a.wait);
        while downloads.is_empty() && std::time::Instant::now() < deadline {
            cancel.check()?;
            tokio::time::sleep(std::time::Duration::from_secs(POLL_SECS)).await;
            let log = app
                .access_log(ipc::IdRef {
                    id: share.to_owned(),
                })
                .await?;
            for d in log.downloads {
                // The session words each download ("… downloaded the link at …" or "… tried a
                // wrong passcode for the link at …"); the tag keeps the two apart for scripts.
                if d.contains("wrong passcode") {
                    outln!("WRONG PASSCODE: {d}");
                } else {
                    outln!("DOWNLOADED: {d}");
                }
                downloads.push(d);
            }
        }
        if downloads.is_empty() {
            errln!("nobody opened the link yet");
        }
    }
    Ok(serde_json::json!({
        "link": link.id,
        "files": link.files,
        "attachments": link.attachments,
        "left_out": link.left_out,
        "expires_at": link.expires_at,
        "passcode": link.passcode.is_some(),
        "downloads": downloads,
    }))
}

/// The arguments of `doctor open`.
#[derive(Debug)]
pub struct OpenArgs {
    /// `shlink:/…`, a viewer URL `…#shlink:/…`, or a SMART Health Card `shc:/…`.
    pub link: String,
    /// The passcode of a `P` link.
    pub passcode: Option<String>,
    /// The recipient name sent with the manifest request (the throwaway card's name).
    pub name: String,
    /// Write the decrypted files here (mode 0600; PLAINTEXT).
    pub out: Option<PathBuf>,
    /// Print the JSON summary.
    pub json: bool,
}

/// Opens a SMART Health Link through the doctor session, as the doctor app does: prints
/// `LINK: <label>`, then one line per file, `FILE: <n> <content type> <resourceType> <bytes>`
/// (or `file <n>: skipped (<code>)` on stderr), then `OPENED: <n> files`; with `--out` writes
/// each file.
pub async fn open(a: OpenArgs) -> Result<()> {
    if let Some(d) = &a.out {
        prepare_dir(d)?;
    }
    let device = Device::new()?;
    let profile = Profile {
        name: &a.name,
        licence: None,
        relay_url: NO_RELAY,
        enrollment_key: None,
    };
    let app = device
        .doctor(&profile, Identity::Fresh, Arc::new(NoEvents))
        .await?;
    let opened = app
        .open_smart_link_files(ipc::OpenSmartLink {
            text: a.link,
            passcode: a.passcode,
        })
        .await
        .map_err(|e| match e.code.as_str() {
            // The session refuses a `P` link without its passcode before any request; on the
            // command line that is a missing argument.
            "passcode_required" => {
                CliError::Usage("this link needs its passcode: add --passcode".into())
            }
            _ => CliError::App(e),
        })?;
    outln!("LINK: {}", opened.label.as_deref().unwrap_or("(no label)"));
    let mut count = 0usize;
    let mut summary = Vec::new();
    for f in &opened.files {
        let file = match &f.outcome {
            Ok(file) => file,
            Err(err) => {
                errln!("file {}: skipped ({})", f.index, err.code);
                continue;
            }
        };
        outln!(
            "FILE: {} {} {} {} bytes",
            f.index,
            file.content_type,
            file.kind,
            file.bytes.len()
        );
        if let Some(d) = &a.out {
            let p = d.join(format!("{:04}-{}.json", f.index, file.kind));
            write_private(&p, &file.bytes)?;
            outln!("WROTE: {}", p.display());
        }
        summary.push(serde_json::json!({"content_type": file.content_type, "resource": file.kind, "bytes": file.bytes.len()}));
        count += 1;
    }
    outln!("OPENED: {count} files");
    if a.out.is_some() {
        errln!(
            "the files written are PLAINTEXT health records: keep them safe, delete them after use"
        );
    }
    if a.json {
        outln!(
            "{}",
            serde_json::json!({"ok": true, "role": "doctor", "files": summary, "unsigned": true})
        );
    }
    Ok(())
}
