//! Every argument a command takes is checked here before any work starts.
//!
//! Each rule is one function returning [`AppError`] with code `invalid_input` and a message
//! that names the field and what is expected, never the value given (it may be a passphrase
//! or a patient datum). The [`crate::ipc`] request types call these from their `validate`.

use std::net::IpAddr;

use crate::error::{AppError, Result};

/// Shortest passphrase accepted for a new vault (characters).
pub const PASSPHRASE_MIN_CHARS: usize = 10;
/// Longest passphrase accepted (characters; Argon2id takes any length, the UI does not).
pub const PASSPHRASE_MAX_CHARS: usize = 1024;
/// Longest display name, licence id or free-text reason (characters, as the core's card).
pub const NAME_MAX_CHARS: usize = 200;
/// Longest relay URL.
pub const URL_MAX_CHARS: usize = 2048;
/// Longest search query (characters).
pub const QUERY_MAX_CHARS: usize = 200;
/// Largest file the apps import (a FHIR Bundle, NDJSON export, PDF or image).
pub const IMPORT_MAX_BYTES: u64 = 512 << 20;
/// Largest FHIR resource a doctor writes back (bytes of JSON).
pub const NOTE_MAX_BYTES: usize = 1 << 20;
/// Shortest and longest share duration (seconds): five minutes to a year.
pub const SHARE_MIN_SECS: u64 = 5 * 60;
/// See [`SHARE_MIN_SECS`].
pub const SHARE_MAX_SECS: u64 = 366 * 24 * 3600;
/// Deepest delegation chain a patient can allow under policy `allowed`.
pub const MAX_DELEGATION_DEPTH: u8 = 3;
/// Auto-lock delay bounds (seconds): 30 s to 24 h.
pub const AUTO_LOCK_MIN_SECS: u64 = 30;
/// See [`AUTO_LOCK_MIN_SECS`].
pub const AUTO_LOCK_MAX_SECS: u64 = 24 * 3600;
/// Longest a single long-poll command waits (seconds).
pub const WAIT_MAX_SECS: u64 = 600;
/// Most records or categories one share names.
pub const SHARE_MAX_SELECTED: usize = 100_000;

fn bad(field: &str, expected: &str) -> AppError {
    AppError::invalid_input(format!("{field}: {expected}"))
}

/// Free text shown to other people (names, licence ids, reasons): 1..=`max` characters, no
/// control characters, not only spaces.
pub fn text(field: &str, value: &str, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n == 0 || value.trim().is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if n > max {
        return Err(bad(field, &format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

/// A display name on a card.
pub fn name(field: &str, value: &str) -> Result<()> {
    text(field, value, NAME_MAX_CHARS)
}

/// A new passphrase: long enough and not trivially weak. The strength the UI shows comes from
/// [`passphrase_strength`]; below 2 it is refused.
pub fn new_passphrase(value: &str) -> Result<()> {
    let n = value.chars().count();
    if n < PASSPHRASE_MIN_CHARS {
        return Err(bad(
            "passphrase",
            &format!("use at least {PASSPHRASE_MIN_CHARS} characters"),
        ));
    }
    if n > PASSPHRASE_MAX_CHARS {
        return Err(bad(
            "passphrase",
            &format!("must be at most {PASSPHRASE_MAX_CHARS} characters"),
        ));
    }
    if passphrase_strength(value) < 2 {
        return Err(bad(
            "passphrase",
            "too easy to guess: add words, or mix letters, digits and symbols",
        ));
    }
    Ok(())
}

/// A passphrase typed to unlock: not empty, not absurdly long (the vault decides if it is
/// right).
pub fn passphrase(value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(bad("passphrase", "must not be empty"));
    }
    if value.chars().count() > PASSPHRASE_MAX_CHARS {
        return Err(bad(
            "passphrase",
            &format!("must be at most {PASSPHRASE_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Strength score 0 (very weak) to 4 (strong) for the onboarding meter: an estimate of the
/// guessing entropy from length and character classes, with repeated characters and runs
/// counted once. It is a hint for the user, not a security boundary (Argon2id is).
pub fn passphrase_strength(value: &str) -> u8 {
    let mut pool = 0u32;
    let has = |f: fn(&char) -> bool| value.chars().any(|c| f(&c));
    if has(char::is_ascii_lowercase) {
        pool += 26;
    }
    if has(char::is_ascii_uppercase) {
        pool += 26;
    }
    if has(char::is_ascii_digit) {
        pool += 10;
    }
    if has(|c| c.is_ascii_punctuation() || *c == ' ') {
        pool += 33;
    }
    if has(|c| !c.is_ascii()) {
        pool += 100;
    }
    // Characters that repeat the previous one or continue a run (abc, 123) add little.
    let mut effective = 0usize;
    let mut prev: Option<char> = None;
    for c in value.chars() {
        let counts = match prev {
            Some(p) => p != c && (c as u32) != (p as u32).wrapping_add(1),
            None => true,
        };
        if counts {
            effective += 1;
        }
        prev = Some(c);
    }
    let bits = effective as f64 * f64::from(pool.max(1)).log2();
    match bits {
        b if b < 28.0 => 0,
        b if b < 40.0 => 1,
        b if b < 60.0 => 2,
        b if b < 80.0 => 3,
        _ => 4,
    }
}

/// A relay URL: `https://`, or `http://` only to a loopback host (a relay on this machine for
/// development and tests); no user info, a host, at most [`URL_MAX_CHARS`].
/// The operator's enrollment key of a closed relay (docs/relay.md "Enrollment"): 1 to
/// [`carekey_client::relay::ENROLLMENT_KEY_MAX_CHARS`] visible ASCII characters. The message
/// never repeats it.
pub fn enrollment_key(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= carekey_client::relay::ENROLLMENT_KEY_MAX_CHARS
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "enrollment key",
            "must be 1 to 256 visible characters, without spaces",
        ))
    }
}

pub fn relay_url(value: &str) -> Result<()> {
    const FIELD: &str = "relay URL";
    if value.is_empty() || value.len() > URL_MAX_CHARS {
        return Err(bad(
            FIELD,
            "must be a URL such as https://relay.example.org",
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(FIELD, "must not contain spaces or control characters"));
    }
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| bad(FIELD, "must start with https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(FIELD, "must not contain a user name or password"));
    }
    let host = host_of(authority).ok_or_else(|| bad(FIELD, "has no valid host"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(bad(
            FIELD,
            "must use https:// (http:// is only allowed for a relay on this device)",
        )),
        _ => Err(bad(FIELD, "must start with https://")),
    }
}

/// The host of an authority (`host`, `host:port`, `[v6]:port`), `None` when empty or the port
/// is not a number.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return None;
    }
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    ok.then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A hex id of exactly `bytes` bytes (lowercase hex, as the app hands them out).
pub fn hex_id<const N: usize>(field: &str, value: &str) -> Result<[u8; N]> {
    let expected = format!("must be {} lowercase hex characters", N * 2);
    if value.len() != N * 2
        || !value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad(field, &expected));
    }
    let v = data_encoding::HEXLOWER
        .decode(value.as_bytes())
        .map_err(|_| bad(field, &expected))?;
    v.try_into().map_err(|_| bad(field, &expected))
}

/// The categories of a narrower confirm, on their own: at least one, each once (a doctor
/// confirmed for nothing would hold a grant that reads nothing; an empty list is refused
/// rather than read as "the whole share", which is the absent list).
///
/// Generic over the category type so this module stays below `ipc`, whose argument types
/// call it.
pub fn confirm_categories<C: PartialEq>(chosen: &[C]) -> Result<()> {
    if chosen.is_empty() {
        return Err(bad("categories", "tick at least one kind of record"));
    }
    for (i, c) in chosen.iter().enumerate() {
        if chosen[..i].contains(c) {
            return Err(bad("categories", "must name each kind of record once"));
        }
    }
    Ok(())
}

/// The categories of a narrower confirm against the share's own: each must be in the share
/// (a grant can only narrow what the patient shared, never widen it).
pub fn confirm_scope<C: PartialEq>(chosen: &[C], share: &[C]) -> Result<()> {
    confirm_categories(chosen)?;
    if chosen.iter().any(|c| !share.contains(c)) {
        return Err(bad(
            "categories",
            "must be among the kinds of record in this share",
        ));
    }
    Ok(())
}

/// A share duration in seconds.
pub fn share_duration(secs: u64) -> Result<()> {
    if !(SHARE_MIN_SECS..=SHARE_MAX_SECS).contains(&secs) {
        return Err(bad(
            "expiry",
            "must be between 5 minutes and one year from now",
        ));
    }
    Ok(())
}

/// An absolute share expiry (unix seconds) relative to `now`.
pub fn share_expiry(expires_at: u64, now: u64) -> Result<()> {
    share_duration(expires_at.saturating_sub(now)).and_then(|()| {
        if expires_at <= now {
            Err(bad("expiry", "must be in the future"))
        } else {
            Ok(())
        }
    })
}

/// A delegation depth for the given policy: 1..=[`MAX_DELEGATION_DEPTH`] under `allowed`,
/// 0 otherwise.
pub fn delegation_depth(allowed: bool, depth: u8) -> Result<()> {
    match (allowed, depth) {
        (true, 1..=MAX_DELEGATION_DEPTH) | (false, 0) => Ok(()),
        (true, _) => Err(bad(
            "depth",
            &format!("must be 1 to {MAX_DELEGATION_DEPTH} when forwarding is allowed"),
        )),
        (false, _) => Err(bad("depth", "must be 0 unless forwarding is allowed")),
    }
}

/// An auto-lock delay in seconds; `None` means never.
pub fn auto_lock(secs: Option<u64>) -> Result<()> {
    match secs {
        None => Ok(()),
        Some(s) if (AUTO_LOCK_MIN_SECS..=AUTO_LOCK_MAX_SECS).contains(&s) => Ok(()),
        Some(_) => Err(bad("auto-lock", "must be between 30 seconds and 24 hours")),
    }
}

/// A long-poll wait in seconds.
pub fn wait_secs(secs: u64) -> Result<()> {
    if secs == 0 || secs > WAIT_MAX_SECS {
        return Err(bad(
            "wait",
            &format!("must be 1 to {WAIT_MAX_SECS} seconds"),
        ));
    }
    Ok(())
}

/// A search query: at most [`QUERY_MAX_CHARS`], no control characters (empty is allowed and
/// lists everything).
pub fn query(value: &str) -> Result<()> {
    if value.chars().count() > QUERY_MAX_CHARS {
        return Err(bad(
            "search",
            &format!("must be at most {QUERY_MAX_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("search", "must not contain control characters"));
    }
    Ok(())
}

/// What an imported file holds, from its first bytes (not its name, which the user controls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// A FHIR Bundle (a JSON object).
    Bundle,
    /// FHIR NDJSON (one resource per line).
    Ndjson,
}

/// Checks an import file's size and sniffs its kind: a JSON object whose first line is the
/// whole resource is NDJSON, a JSON object spanning lines (or one line with `"Bundle"`) is a
/// Bundle. Anything else is refused before parsing.
pub fn import_file(bytes: &[u8]) -> Result<ImportKind> {
    const FIELD: &str = "file";
    if bytes.is_empty() {
        return Err(bad(FIELD, "is empty"));
    }
    if bytes.len() as u64 > IMPORT_MAX_BYTES {
        return Err(bad(FIELD, "is larger than 512 MiB"));
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let trimmed = body.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return Err(bad(
            FIELD,
            "is not a FHIR file (expected a JSON Bundle or NDJSON)",
        ));
    }
    let first_line = trimmed.split(|b| *b == b'\n').next().unwrap_or_default();
    let more_lines = trimmed[first_line.len()..].contains(&b'{');
    let first_is_whole = serde_json::from_slice::<serde_json::Value>(first_line)
        .map(|v| v.is_object())
        .unwrap_or(false);
    if first_is_whole {
        let is_bundle = serde_json::from_slice::<serde_json::Value>(first_line)
            .ok()
            .and_then(|v| {
                v.get("resourceType")
                    .and_then(|t| t.as_str().map(str::to_owned))
            })
            .is_some_and(|t| t == "Bundle");
        if is_bundle && !more_lines {
            return Ok(ImportKind::Bundle);
        }
        return Ok(ImportKind::Ndjson);
    }
    Ok(ImportKind::Bundle)
}

/// A FHIR resource a doctor writes back: a JSON object of a type the patient's vault shows,
/// within [`NOTE_MAX_BYTES`].
pub fn note_resource(value: &serde_json::Value) -> Result<()> {
    const FIELD: &str = "resource";
    const TYPES: [&str; 7] = [
        "Observation",
        "MedicationStatement",
        "MedicationRequest",
        "Condition",
        "DocumentReference",
        "Communication",
        "CarePlan",
    ];
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > NOTE_MAX_BYTES {
        return Err(bad(FIELD, "is larger than 1 MiB"));
    }
    let ty = value
        .get("resourceType")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad(FIELD, "must be a FHIR resource with a resourceType"))?;
    if !TYPES.contains(&ty) {
        return Err(bad(
            FIELD,
            "must be an Observation, MedicationStatement, MedicationRequest, Condition, \
             DocumentReference, Communication or CarePlan",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<impl Sized>) -> String {
        r.err().map(|e| e.code).unwrap_or_default()
    }

    #[test]
    fn relay_urls() {
        for ok in [
            "https://relay.example.org",
            "https://relay.example.org:8443/base",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9000",
            "HTTPS://Relay.Example.org",
        ] {
            assert!(relay_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "relay.example.org",
            "http://relay.example.org",
            "http://10.0.0.1",
            "ftp://relay.example.org",
            "https://user:pw@relay.example.org",
            "https://",
            "https://relay.example.org:99999",
            "https://relay example.org",
            "https://relay.example.org/\n",
            "javascript://alert(1)",
        ] {
            assert_eq!(code(relay_url(bad)), "invalid_input", "{bad:?}");
        }
        assert_eq!(
            code(relay_url(&"a".repeat(URL_MAX_CHARS + 1))),
            "invalid_input"
        );
    }

    #[test]
    fn passphrases() {
        assert!(new_passphrase("correct horse battery staple").is_ok());
        assert!(new_passphrase("Tr0ub4dor&3x").is_ok());
        assert_eq!(code(new_passphrase("short")), "invalid_input");
        assert_eq!(code(new_passphrase("aaaaaaaaaaaaaaaa")), "invalid_input");
        assert_eq!(code(new_passphrase("abcdefghijklmnop")), "invalid_input");
        assert_eq!(code(new_passphrase(&"xY9!".repeat(300))), "invalid_input");
        assert!(passphrase_strength("password") < passphrase_strength("correct horse battery"));
        assert_eq!(passphrase_strength(""), 0);
        assert_eq!(code(passphrase("")), "invalid_input");
        assert!(passphrase("x").is_ok());
    }

    #[test]
    fn messages_never_echo_the_value() {
        let secret = "my secret passphrase \u{7}";
        let e = text("name", secret, 200).expect_err("control char");
        assert!(!e.message.contains("secret"));
        let e = relay_url("http://secret-host.example").expect_err("http");
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn names_ids_and_numbers() {
        assert!(name("name", "Dr. Ada Quinn").is_ok());
        assert_eq!(code(name("name", "")), "invalid_input");
        assert_eq!(code(name("name", "   ")), "invalid_input");
        assert_eq!(code(name("name", &"x".repeat(201))), "invalid_input");
        assert_eq!(code(name("name", "a\u{0}b")), "invalid_input");
        assert_eq!(hex_id::<2>("id", "0aff").expect("hex"), [0x0a, 0xff]);
        assert_eq!(code(hex_id::<2>("id", "0AFF")), "invalid_input");
        assert_eq!(code(hex_id::<2>("id", "0af")), "invalid_input");
        assert_eq!(code(hex_id::<2>("id", "0afg")), "invalid_input");
        assert!(share_duration(3600).is_ok());
        assert_eq!(code(share_duration(60)), "invalid_input");
        assert_eq!(code(share_duration(SHARE_MAX_SECS + 1)), "invalid_input");
        assert!(share_expiry(10_000 + 3600, 10_000).is_ok());
        assert_eq!(code(share_expiry(9_000, 10_000)), "invalid_input");
        assert!(delegation_depth(true, 2).is_ok());
        assert!(delegation_depth(false, 0).is_ok());
        assert_eq!(code(delegation_depth(true, 0)), "invalid_input");
        assert_eq!(code(delegation_depth(true, 9)), "invalid_input");
        assert_eq!(code(delegation_depth(false, 1)), "invalid_input");
        assert!(auto_lock(None).is_ok());
        assert!(auto_lock(Some(300)).is_ok());
        assert_eq!(code(auto_lock(Some(5))), "invalid_input");
        assert_eq!(code(wait_secs(0)), "invalid_input");
        assert_eq!(code(wait_secs(601)), "invalid_input");
        assert!(query("").is_ok());
        assert_eq!(code(query(&"q".repeat(201))), "invalid_input");
        assert_eq!(code(query("a\tb")), "invalid_input");
    }

    #[test]
    fn import_files_are_sniffed() {
        let bundle = br#"{
  "resourceType": "Bundle", "entry": []
}"#;
        assert_eq!(import_file(bundle).expect("bundle"), ImportKind::Bundle);
        assert_eq!(
            import_file(br#"{"resourceType":"Bundle","entry":[]}"#).expect("one-line bundle"),
            ImportKind::Bundle
        );
        let nd = b"{\"resourceType\":\"Patient\",\"id\":\"1\"}\n{\"resourceType\":\"Condition\"}\n";
        assert_eq!(import_file(nd).expect("ndjson"), ImportKind::Ndjson);
        assert_eq!(code(import_file(b"")), "invalid_input");
        assert_eq!(code(import_file(b"%PDF-1.7")), "invalid_input");
        assert_eq!(code(import_file(b"[1,2]")), "invalid_input");
    }

    #[test]
    fn note_resources() {
        assert!(note_resource(&serde_json::json!({"resourceType": "Observation"})).is_ok());
        assert_eq!(
            code(note_resource(
                &serde_json::json!({"resourceType": "Patient"})
            )),
            "invalid_input"
        );
        assert_eq!(
            code(note_resource(&serde_json::json!([1]))),
            "invalid_input"
        );
        let big = serde_json::json!({"resourceType": "Observation",
            "note": [{"text": "x".repeat(NOTE_MAX_BYTES)}]});
        assert_eq!(code(note_resource(&big)), "invalid_input");
    }
}
