//! `carekey`: the check-up flows from the command line, against a relay, for scripting, demos
//! and tests (docs/cli.md).
//!
//! stdout carries only tagged lines (`QR:`, `DOCTOR:`, `CHECK:`, `CONFIRMED:`, `NOTE:`,
//! `PATIENT:`, `RECEIVED:`, `WROTE:`, `NOTE SENT:`; `CLINIC:`, `CARD:`, `FINGERPRINT:`,
//! `ATTESTATION:` for `carekey clinic`) and, with `--json`, one summary line; everything else
//! (QR art, progress, questions, warnings, errors) goes to stderr. Nothing printed carries a
//! key, a token or record contents, except the clinic's public key in its `CLINIC:` text.
#![forbid(unsafe_code)]

/// `println!` that never panics: a closed stdout (`carekey … | head`) is ignored.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `eprintln!` that never panics.
macro_rules! errln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock());
    }};
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($t)*);
    }};
}

mod clinic_cmd;
mod device;
mod doctor_cmd;
mod error;
mod identity;
mod link_cmd;
mod patient_cmd;
mod records;
mod term;

use std::path::PathBuf;
use std::process::ExitCode;

use carekey_client::ClientError;
use carekey_client::progress::Cancel;
use carekey_core::grant::Policy;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{CliError, exit};

const AFTER_HELP: &str = "\
Identities:
  Every run makes a fresh device identity (keys and a self-signed card) unless
  --identity FILE is given. FILE then holds the identity's 24-word recovery phrase
  (BIP39 English, the same format as the vault's recovery phrase): it is created
  with mode 0600 if missing, loaded if present, and refused if others can read it.
  Anyone holding that file can act as that device: keep it secret.

Output:
  stdout carries only tagged lines (QR:, DOCTOR:, CHECK:, CONFIRMED:, NOTE:,
  PATIENT:, RECEIVED:, WROTE:, NOTE SENT:; CLINIC:, CARD:, FINGERPRINT:,
  ATTESTATION: for `carekey clinic`) and, with --json, one JSON summary line.
  QR art, progress, questions, warnings and errors go to stderr. Nothing printed
  carries a key, a token or record contents (the clinic's public key excepted).

Errors are printed as `error[<code>]: <message>` on stderr.

Exit codes:
  0    success
  1    other failure
  2    usage: bad command line or argument value (also error[invalid_input])
  3    the relay is unreachable, timed out, failed or answered malformed, or the
       URL is not a Carekey relay (error[not_a_relay])
  4    nobody answered within --wait (error[no_answer])
  5    verification failed: expired QR (error[expired]), QR already used
       (error[already_used]), tampered or forged data (error[tampered])
  6    the relay refused: access ended, not found, conflict, not allowed
  7    the patient answered that the check codes do not match (error[declined])
  8    a local file could not be read or written, or is unusable (error[input])
  130  cancelled with Ctrl-C (error[cancelled])";

#[derive(Debug, Parser)]
#[command(
    name = "carekey",
    version,
    about = "Carekey check-up flows from the command line: share records through a relay, scan, fetch, write notes back.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Print one JSON summary line on stdout at the end.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    role: RoleCmd,
}

#[derive(Debug, Subcommand)]
enum RoleCmd {
    /// The patient's side.
    #[command(subcommand)]
    Patient(PatientCmd),
    /// The doctor's side.
    #[command(subcommand)]
    Doctor(DoctorCmd),
    /// A clinic's side: make its attestation key and attest clinicians' cards
    /// (docs/threat-model.md "Card trust").
    #[command(subcommand, after_help = AFTER_HELP)]
    Clinic(ClinicCmd),
}

#[derive(Debug, Subcommand)]
enum ClinicCmd {
    /// Make the clinic's attestation key: kept in FILE (mode 0600, never printed); prints the
    /// public CLINIC: text patients and doctors add to their trusted clinics.
    Keygen(KeygenCli),
    /// Attest a clinician's card: verifies the CAREKEY-CARD: text (the doctor app's Profile
    /// shows it), prints whose it is and the ATTESTATION: text the doctor app imports.
    Attest(AttestCli),
}

#[derive(Debug, Args)]
struct KeygenCli {
    /// The key file to create (refused if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The clinic's name, as patients' and doctors' devices will list it.
    #[arg(long)]
    name: String,
}

#[derive(Debug, Args)]
struct AttestCli {
    /// The clinic key file made by `carekey clinic keygen`.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The clinician's card text (`CAREKEY-CARD:…`, from the doctor app's Profile).
    #[arg(long, value_name = "TEXT")]
    card: String,
    /// The clinic name signed into the attestation (default: the name in the key file).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PatientCmd {
    /// Share records for a check-up: upload, show the QR, wait for the doctor, compare codes,
    /// confirm, optionally wait for notes.
    #[command(after_help = AFTER_HELP)]
    Share(ShareCli),
}

#[derive(Debug, Subcommand)]
enum DoctorCmd {
    /// Answer a patient's QR: show the check code, wait for the grant, fetch and verify the
    /// records, optionally write them out and send a note back.
    #[command(after_help = AFTER_HELP)]
    Scan(ScanCli),
    /// Open a SMART Health Link (`shlink:/…` or a viewer URL `…#shlink:/…`) from any SHL
    /// sharer: fetch the manifest, decrypt every file, optionally write them out.
    #[command(after_help = AFTER_HELP)]
    Open(OpenCli),
}

#[derive(Debug, Args)]
struct OpenCli {
    /// The link: `shlink:/…` or `https://viewer…#shlink:/…`.
    link: String,
    /// The passcode of a link with flag P.
    #[arg(long)]
    passcode: Option<String>,
    /// The recipient name sent with the manifest request (the patient's log shows it).
    #[arg(long, default_value = "Dr. Ada Quinn")]
    name: String,
    /// Write the decrypted files into DIR (files mode 0600; they are PLAINTEXT).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    /// The doctor may not forward.
    Never,
    /// The doctor may ask the patient to grant a colleague.
    Ask,
    /// The doctor may delegate to colleagues (the patient is notified).
    Allowed,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["bundle", "ndjson_dir"]))]
struct ShareCli {
    /// Relay base URL (https://…, or http:// for loopback).
    #[arg(long, env = "CAREKEY_RELAY")]
    relay: String,
    /// The operator's enrollment key of a closed relay (docs/relay.md "Enrollment"); sent
    /// only to that relay.
    #[arg(long, env = "CAREKEY_ENROLLMENT_KEY", hide_env_values = true)]
    enrollment_key: Option<String>,
    /// `all`, or categories separated by commas: allergies, conditions, medications,
    /// immunizations, procedures, observations, documents, encounters, notes, demographics,
    /// other.
    #[arg(long, default_value = "all")]
    records: String,
    /// How long access lasts: a number with s, m, h or d (e.g. 90m, 24h, 7d; at most 365d).
    #[arg(long, default_value = "24h")]
    expires: String,
    /// Forwarding policy.
    #[arg(long, value_enum, default_value = "never")]
    policy: PolicyArg,
    /// Delegation depth with --policy allowed.
    #[arg(long, default_value_t = 1)]
    depth: u8,
    /// A FHIR Bundle (JSON) to share.
    #[arg(long, value_name = "FILE.json")]
    bundle: Option<PathBuf>,
    /// A FHIR bulk-export (Synthea) directory of NDJSON files; one patient is shared.
    #[arg(long, value_name = "DIR")]
    ndjson_dir: Option<PathBuf>,
    /// Which patient of the NDJSON export (0-based, in patient-id order).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "ndjson_dir")]
    patient_index: usize,
    /// The name on the patient's card.
    #[arg(long, default_value = "Pat Example")]
    name: String,
    /// Keep the device identity in FILE (24-word phrase, mode 0600); see "Identities".
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Confirm without asking whether the check codes match (scripts and tests only: a human
    /// must compare the codes).
    #[arg(long)]
    yes: bool,
    /// Seconds to wait for the doctor to scan.
    #[arg(long, default_value_t = 120)]
    wait: u64,
    /// After confirming, wait up to this many seconds for notes from the doctor (0: don't).
    #[arg(long, value_name = "S", default_value_t = 0)]
    inbox_wait: u64,
    /// Do not draw the QR on stderr.
    #[arg(long)]
    no_qr_art: bool,
    /// Publish the share as a SMART Health Link (`shlink:/…`, for a clinic without Carekey)
    /// instead of pairing: prints SHLINK: and PASSCODE:; --wait then waits for a download.
    #[arg(long)]
    shl: bool,
    /// The link's passcode (with --shl; default: 8 random digits).
    #[arg(long, requires = "shl", conflicts_with = "no_passcode")]
    passcode: Option<String>,
    /// A link without passcode: whoever has it reads the records (with --shl).
    #[arg(long, requires = "shl")]
    no_passcode: bool,
    /// How long the link works (with --shl; at most --expires).
    #[arg(long, requires = "shl", default_value = "24h")]
    link_expires: String,
    /// Wrong passcodes before the link dies (with --shl).
    #[arg(long, requires = "shl", default_value_t = 5)]
    attempts: u32,
    /// The link's label, shown by the viewer (with --shl).
    #[arg(long, requires = "shl")]
    label: Option<String>,
}

#[derive(Debug, Args)]
struct ScanCli {
    /// The QR text (`CAREKEY:…`, the patient's `QR:` line).
    payload: String,
    /// The name on the doctor's card.
    #[arg(long, default_value = "Dr. Ada Quinn")]
    name: String,
    /// The licence id on the doctor's card (self-asserted).
    #[arg(long)]
    licence: Option<String>,
    /// Keep the device identity in FILE (24-word phrase, mode 0600); see "Identities".
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Seconds to wait for the patient to confirm.
    #[arg(long, default_value_t = 120)]
    wait: u64,
    /// Write the decrypted records into DIR (files mode 0600; they are PLAINTEXT).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Sign and send this FHIR resource (JSON) back to the patient after fetching.
    #[arg(long, value_name = "FILE.json")]
    note: Option<PathBuf>,
    /// The operator's enrollment key of a closed relay (docs/relay.md "Enrollment"); sent
    /// only to that relay.
    #[arg(long, env = "CAREKEY_ENROLLMENT_KEY", hide_env_values = true)]
    enrollment_key: Option<String>,
}

/// Parses `90m`, `24h`, `7d`, `3600s` (or plain seconds).
fn parse_duration(s: &str) -> Result<u64, CliError> {
    let s = s.trim();
    let bad = || {
        CliError::Usage(format!(
            "--expires {s:?}: use a number with s, m, h or d, e.g. 90m, 24h, 7d"
        ))
    };
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        Some(_) => (s, 1),
        None => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs == 0 || secs > 365 * 86_400 {
        return Err(CliError::Usage(format!(
            "--expires {s:?}: must be more than 0 and at most 365d"
        )));
    }
    Ok(secs)
}

async fn run(cli: Cli, cancel: Cancel) -> Result<(), CliError> {
    match cli.role {
        RoleCmd::Patient(PatientCmd::Share(a)) => {
            let policy = match a.policy {
                PolicyArg::Never => Policy::Never,
                PolicyArg::Ask => Policy::Ask,
                PolicyArg::Allowed => Policy::Allowed,
            };
            let args = patient_cmd::ShareArgs {
                selection: records::parse_selection(&a.records)?,
                expires_in: parse_duration(&a.expires)?,
                depth: if policy == Policy::Allowed {
                    a.depth
                } else {
                    0
                },
                policy,
                relay: a.relay,
                enrollment_key: a.enrollment_key,
                bundle: a.bundle,
                ndjson_dir: a.ndjson_dir,
                patient_index: a.patient_index,
                name: a.name,
                identity: a.identity,
                yes: a.yes,
                wait: a.wait,
                inbox_wait: a.inbox_wait,
                json: cli.json,
                no_qr_art: a.no_qr_art,
                shl: if a.shl {
                    Some(link_cmd::PublishArgs {
                        passcode: a.passcode,
                        no_passcode: a.no_passcode,
                        attempts: a.attempts,
                        expires_in: parse_duration(&a.link_expires)?,
                        label: a.label,
                        wait: 0,
                        share_expires_at: 0,
                        qr_art: !a.no_qr_art,
                    })
                } else {
                    None
                },
            };
            patient_cmd::share(args, &cancel).await
        }
        RoleCmd::Doctor(DoctorCmd::Scan(a)) => {
            let args = doctor_cmd::ScanArgs {
                payload: a.payload,
                name: a.name,
                licence: a.licence,
                identity: a.identity,
                wait: a.wait,
                out: a.out,
                note: a.note,
                enrollment_key: a.enrollment_key,
                json: cli.json,
            };
            doctor_cmd::scan(args, &cancel).await
        }
        RoleCmd::Clinic(ClinicCmd::Keygen(a)) => clinic_cmd::keygen(&clinic_cmd::KeygenArgs {
            out: a.out,
            name: a.name,
            json: cli.json,
        }),
        RoleCmd::Clinic(ClinicCmd::Attest(a)) => clinic_cmd::attest(&clinic_cmd::AttestArgs {
            key: a.key,
            card: a.card,
            name: a.name,
            json: cli.json,
        }),
        RoleCmd::Doctor(DoctorCmd::Open(a)) => {
            link_cmd::open(link_cmd::OpenArgs {
                link: a.link,
                passcode: a.passcode,
                name: a.name,
                out: a.out,
                json: cli.json,
            })
            .await
        }
    }
}

fn report(e: &CliError, json: bool) -> ExitCode {
    errln!("error[{}]: {e}", e.code());
    if let Some(h) = e.hint() {
        errln!("hint: {h}");
    }
    if json {
        outln!(
            "{}",
            serde_json::json!({"ok": false, "code": e.code(), "message": e.to_string()})
        );
    }
    ExitCode::from(e.exit_code())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() {
                    exit::USAGE
                } else {
                    exit::OK
                });
            }
            let text = e.render().to_string();
            let text = text.trim_start_matches("error: ").trim_end();
            errln!("error[usage]: {text}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let json = cli.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                &CliError::Input(format!("could not start the runtime: {}", e.kind())),
                json,
            );
        }
    };
    let cancel = Cancel::new();
    let result = rt.block_on(async {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                // No signal handler: never cancel.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = run(cli, cancel.clone()) => r,
            () = ctrl_c => {
                // Stops long work between units; dropping the flow aborts requests in flight.
                cancel.cancel();
                Err(CliError::Client(ClientError::Cancelled))
            }
        }
    });
    // A pending stdin read (the codes question) must not keep the process alive.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => report(&e, json),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m").ok(), Some(5400));
        assert_eq!(parse_duration("24h").ok(), Some(86_400));
        assert_eq!(parse_duration("7d").ok(), Some(604_800));
        assert_eq!(parse_duration("45").ok(), Some(45));
        for bad in [
            "",
            "h",
            "0h",
            "-1d",
            "366d",
            "1y",
            "99999999999999999999d",
            "é",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
