//! Terminal helpers: QR art, the yes/no question, progress lines. Everything here writes to
//! stderr so stdout stays scriptable.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use carekey_app::events::{AppEvent, EventSink};

use crate::error::{CliError, Result};

/// Renders `text` as a QR code in Unicode half blocks (two modules per character).
pub fn qr_art(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Asks `question` on stderr and reads one line of stdin; only `y`/`yes` is a yes. End of
/// input is a no.
pub async fn ask_yes_no(question: &str) -> Result<bool> {
    err!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let line = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|_| s)
    })
    .await
    .map_err(|_| CliError::Input("could not read the answer".into()))?
    .map_err(|e| CliError::Input(format!("could not read the answer: {}", e.kind())))?;
    if !std::io::stdin().is_terminal() {
        // The answer came from a pipe and echoed nothing: end the question's line.
        errln!();
    }
    let a = line.trim().to_ascii_lowercase();
    Ok(a == "y" || a == "yes")
}

/// One progress report: a stage name and units done of a total.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    stage: String,
    done: u64,
    total: u64,
}

/// Progress on stderr: a rewritten line on a terminal, else one line per stage at its end.
/// Fed by the app layer's events ([`EventSink`]: the sessions' progress, throttled, and their
/// background problems, printed as warnings).
#[derive(Debug)]
pub struct ProgressLine {
    tty: bool,
    last: Mutex<Option<Step>>,
}

impl ProgressLine {
    /// A progress line for stderr.
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }

    /// Ends the line on a terminal; elsewhere prints the last state of the stage.
    pub fn finish(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = last.take() {
            if self.tty {
                errln!();
            } else {
                print_line(&p, "\n");
            }
        }
    }

    fn step(&self, p: Step) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let changed = last.as_ref().is_some_and(|l| l.stage != p.stage);
        if self.tty {
            if changed {
                errln!();
            }
            print_line(&p, "");
        } else if changed && let Some(l) = last.as_ref() {
            print_line(l, "\n");
        }
        *last = Some(p);
    }
}

fn print_line(p: &Step, end: &str) {
    let unit = match p.stage.as_str() {
        "uploading" | "downloading" => " bytes",
        _ => "",
    };
    let pct = (p.done.saturating_mul(100))
        .checked_div(p.total)
        .unwrap_or(100)
        .min(100);
    let start = if end.is_empty() { "\r" } else { "" };
    err!(
        "{start}{}: {}/{}{unit} ({pct}%){end}",
        p.stage,
        p.done,
        p.total
    );
}

impl EventSink for ProgressLine {
    fn emit(&self, event: AppEvent) {
        match event {
            AppEvent::Progress {
                stage, done, total, ..
            } => self.step(Step {
                // The app names stages by the client's (`rekeying`); print them as before.
                stage: if stage == "rekeying" {
                    "re-keying".to_owned()
                } else {
                    stage
                },
                done,
                total,
            }),
            // Codes and messages only: they never carry a key, token or patient datum.
            AppEvent::Problem { code, message } => errln!("warning[{code}]: {message}"),
            // The rest is for a screen to refresh; each command prints its own outcome.
            _ => {}
        }
    }
}
