//! SMART Health Links from the command line (issue 15; docs/cli.md "SMART Health Links"):
//! `carekey patient share --shl` publishes the share as a `shlink:/` any SHL viewer opens
//! (through the patient session, as the patient app does), and
//! `carekey doctor open 'shlink:/…'` opens one (from Carekey or any other SHL sharer) with
//! `carekey-shl`'s reader, as the doctor app's `session/smart.rs` does.

use std::path::PathBuf;

use carekey_app::ipc;
use carekey_app::session::PatientApp;
use carekey_client::progress::Cancel;
use carekey_shl::fetch::ShlClient;
use carekey_shl::{ContentType, Opened, Shlink};

use crate::doctor_cmd::{prepare_dir, write_private};
use crate::error::{CliError, Result};
use crate::identity::now;
use crate::term::qr_art;

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
    /// `shlink:/…` or a viewer URL `…#shlink:/…`.
    pub link: String,
    /// The passcode of a `P` link.
    pub passcode: Option<String>,
    /// The recipient name sent with the manifest request.
    pub name: String,
    /// Write the decrypted files here (mode 0600; PLAINTEXT).
    pub out: Option<PathBuf>,
    /// Print the JSON summary.
    pub json: bool,
}

/// Opens a SMART Health Link: prints `LINK: <label>`, then one line per file,
/// `FILE: <n> <content type> <resourceType> <bytes>`, then `OPENED: <n> files`; with `--out`
/// writes each file.
pub async fn open(a: OpenArgs) -> Result<()> {
    let link = Shlink::parse(&a.link)?;
    link.check_usable(now())?;
    if link.flags().passcode && a.passcode.is_none() {
        return Err(CliError::Usage(
            "this link needs its passcode: add --passcode".into(),
        ));
    }
    if let Some(d) = &a.out {
        prepare_dir(d)?;
    }
    outln!("LINK: {}", link.label().unwrap_or("(no label)"));
    let entries = ShlClient::new(&a.name)?
        .open(&link, a.passcode.as_deref(), now())
        .await?;
    let mut opened = 0usize;
    let mut summary = Vec::new();
    for e in entries {
        let file = match e.outcome {
            Ok(Opened::File(f)) => f,
            Ok(Opened::Fetch(_)) => {
                errln!("file {}: not fetched", e.index);
                continue;
            }
            Err(err) => {
                errln!("file {}: skipped ({})", e.index, err.code());
                continue;
            }
        };
        let ct = file.content_type();
        let kind = match ct {
            ContentType::FhirJson => file
                .fhir_resource()
                .ok()
                .and_then(|v| {
                    v.get("resourceType")
                        .and_then(|t| t.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "?".into()),
            _ => "cards".into(),
        };
        outln!(
            "FILE: {} {} {kind} {} bytes",
            e.index,
            ct.as_str(),
            file.bytes().len()
        );
        if let Some(d) = &a.out {
            let p = d.join(format!("{:04}-{kind}.json", e.index));
            write_private(&p, file.bytes())?;
            outln!("WROTE: {}", p.display());
        }
        summary.push(serde_json::json!({"content_type": ct.as_str(), "resource": kind, "bytes": file.bytes().len()}));
        opened += 1;
    }
    outln!("OPENED: {opened} files");
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
