//! The CLI's error: the client's errors plus the few the tool adds (usage, files, declined),
//! each with a stable code (printed as `error[<code>]: <message>`) and an exit code.
//!
//! Messages never carry keys, tokens or record contents: file errors name the file and a
//! position, never the text found there.

use carekey_client::ClientError;

/// Exit codes (also in `carekey --help` and docs/cli.md).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure.
    pub const OTHER: u8 = 1;
    /// Bad command line or argument value.
    pub const USAGE: u8 = 2;
    /// The relay could not be reached, timed out, failed or answered malformed.
    pub const RELAY: u8 = 3;
    /// Nobody answered in time (doctor scan, patient confirmation).
    pub const NO_ANSWER: u8 = 4;
    /// Verification failed: expired or already used QR, tampered data, forged signature.
    pub const VERIFICATION: u8 = 5;
    /// The relay refused: access ended (revoked or expired), not found, conflict, not allowed.
    pub const REFUSED: u8 = 6;
    /// The patient said the check codes do not match.
    pub const DECLINED: u8 = 7;
    /// A local file could not be read or written, or its contents are unusable.
    pub const INPUT: u8 = 8;
    /// Cancelled (Ctrl-C).
    pub const CANCELLED: u8 = 130;
}

/// Everything the tool can fail with.
#[derive(Debug)]
pub enum CliError {
    /// A flow of the client failed.
    Client(ClientError),
    /// A bad argument value (clap catches the rest).
    Usage(String),
    /// A local file is unreadable, unwritable or unusable.
    Input(String),
    /// The patient answered that the codes do not match.
    Declined,
    /// The URL answers, but not as a Carekey relay (its well-known document is missing or
    /// malformed).
    NotARelay(String, ClientError),
    /// A call of the app layer (`carekey-app`, the sessions the apps use) failed: its stable
    /// code and its message, which never carry a key, token or patient datum.
    App(carekey_app::AppError),
}

impl From<carekey_app::AppError> for CliError {
    fn from(e: carekey_app::AppError) -> Self {
        CliError::App(e)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

impl CliError {
    /// Stable code: the client's [`ClientError::code`], the app layer's `AppError::code`, or
    /// one of `usage`, `input`, `declined`, `not_a_relay`.
    pub fn code(&self) -> &str {
        match self {
            CliError::Client(e) => e.code(),
            CliError::Usage(_) => "usage",
            CliError::Input(_) => "input",
            CliError::Declined => "declined",
            CliError::NotARelay(..) => "not_a_relay",
            CliError::App(e) => &e.code,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Input(_) => exit::INPUT,
            CliError::Declined => exit::DECLINED,
            CliError::NotARelay(..) => exit::RELAY,
            CliError::Client(e) => exit_for(e.code()),
            CliError::App(e) => exit_for(&e.code),
        }
    }

    /// A hint line for the common cases, printed after the error.
    pub fn hint(&self) -> Option<&'static str> {
        // By code: the client's errors reach the tool directly or through the sessions.
        match (self, self.code()) {
            (CliError::Client(_) | CliError::App(_), "relay_unreachable") => {
                Some("check the --relay URL (or the URL in the QR) and that the relay is running")
            }
            (CliError::Client(_) | CliError::App(_), "no_answer") => {
                Some("nobody answered within --wait seconds; start again")
            }
            (CliError::Client(_) | CliError::App(_), "access_ended") => {
                Some("the patient revoked access or the share expired")
            }
            (CliError::NotARelay(..), _) => {
                Some("check the relay URL: it must be a Carekey relay's base URL")
            }
            // `doctor open`: the doctor session's SMART Health Link codes.
            (CliError::App(_), "passcode_rejected") => {
                Some("ask the patient for the passcode again; each wrong one uses up an attempt")
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Client(e) => write!(f, "{e}"),
            CliError::Usage(m) | CliError::Input(m) => f.write_str(m),
            CliError::NotARelay(url, e) => {
                write!(f, "{url} does not answer as a Carekey relay ({e})")
            }
            // The message alone: the code is printed in front (`error[<code>]: `).
            CliError::App(e) => f.write_str(&e.message),
            CliError::Declined => f.write_str(
                "the check codes do not match: nothing was shared; start again with a new QR",
            ),
        }
    }
}

/// The exit code of an error code of the client or the app layer (the app passes the client's
/// and the vault's codes through and adds its own, `carekey_app::AppError`).
fn exit_for(code: &str) -> u8 {
    match code {
        // `unreachable`: a SMART Health Link's server (`doctor open`), not a relay, but the
        // same kind of failure.
        "relay_unreachable" | "unreachable" | "timeout" | "relay_failure" | "rate_limited"
        | "bad_response" => exit::RELAY,
        "no_answer" => exit::NO_ANSWER,
        "tampered" | "expired" | "already_used" | "wrong_key" => exit::VERIFICATION,
        "declined" => exit::DECLINED,
        "access_ended"
        | "not_found"
        | "conflict"
        | "refused"
        | "not_allowed"
        | "enrollment_required"
        | "passcode_rejected"
        | "passcode_required" => exit::REFUSED,
        "invalid_input" | "not_supported" => exit::USAGE,
        "cancelled" => exit::CANCELLED,
        _ => exit::OTHER,
    }
}

/// Result alias of the tool.
pub type Result<T, E = CliError> = core::result::Result<T, E>;

/// Asks the relay for its well-known document; a URL that answers but not as a relay is
/// [`CliError::NotARelay`] rather than a puzzling `not_found`. The check is the client's
/// [`carekey_client::relay::Relay::probe`], the one the apps' relay check runs too.
pub async fn probe_relay(relay: &carekey_client::relay::Relay) -> Result<()> {
    use carekey_client::relay::RelayProbe;
    match relay.probe().await {
        RelayProbe::Relay => Ok(()),
        RelayProbe::NotARelay(e) => Err(CliError::NotARelay(relay.base().to_owned(), e)),
        RelayProbe::Unreachable(e) => Err(e.into()),
    }
}
