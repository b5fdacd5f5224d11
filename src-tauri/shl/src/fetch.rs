//! The HTTP side (feature `fetch`): the manifest `POST`, the `U`-flag direct `GET`, and the
//! `GET` of manifest `location`s, with `reqwest`. Parsing and decryption stay in the rest of
//! the crate; this module only moves bytes, bounded.
//!
//! SHL "SMART Health Link Manifest Request": `POST` with `content-type: application/json`;
//! "If the SMART Health Link is no longer active, the Resource Server SHALL respond with a
//! 404"; an invalid passcode is a `401` whose JSON body has `remainingAttempts`. SHL "Polling
//! manifest for changes": `429 Too Many Requests` with `Retry-After`. SHL "SMART Health Link
//! Direct File Request (with `U` Flag)": `GET` with the query parameter `recipient`.

use std::time::Duration;

use reqwest::{Response, StatusCode, redirect};
use serde_json::Value;

use crate::endpoint::check_url;
use crate::error::{Result, ShlError};
use crate::jwk::Jwks;
use crate::limits::{MAX_JWE_LEN, MAX_JWKS_LEN, MAX_LOCATION_URL_LEN, MAX_MANIFEST_LEN};
use crate::link::Shlink;
use crate::manifest::{
    DecryptedFile, FileBody, Manifest, ManifestEntry, ManifestFile, ManifestRequest, Opened,
    PendingFile, open_direct_file,
};

/// The largest 401 body read for `remainingAttempts`.
const MAX_ERROR_BODY: usize = 4 * 1024;
/// Redirects followed, each to an acceptable URL (`https://`, or `http://` to loopback).
const MAX_REDIRECTS: usize = 5;

/// An HTTP client for SMART Health Links, for one recipient name.
#[derive(Debug, Clone)]
pub struct ShlClient {
    http: reqwest::Client,
    recipient: String,
}

impl ShlClient {
    /// A client that names itself `recipient` to servers (shown to the sharer: "Dr. A. Example,
    /// Example Clinic"), with a 10 s connect and 60 s request timeout.
    pub fn new(recipient: &str) -> Result<Self> {
        Self::with_timeouts(recipient, Duration::from_secs(10), Duration::from_secs(60))
    }

    /// [`ShlClient::new`] with other timeouts.
    pub fn with_timeouts(recipient: &str, connect: Duration, request: Duration) -> Result<Self> {
        // The same checks as the manifest request's `recipient`.
        ManifestRequest::new(recipient, None)?;
        let policy = redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if check_url(attempt.url().as_str(), MAX_LOCATION_URL_LEN, "redirect").is_ok() {
                attempt.follow()
            } else {
                attempt.error("redirect to a URL that is not https")
            }
        });
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .redirect(policy)
            .user_agent(concat!("carekey-shl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(net)?;
        Ok(Self {
            http,
            recipient: recipient.to_owned(),
        })
    }

    /// The whole open flow for a link at `now`: [`Shlink::check_usable`]; with the `U` flag,
    /// [`ShlClient::get_direct`] and [`open_direct_file`] (one entry); otherwise
    /// [`ShlClient::post_manifest`], [`Manifest::open`], and every `location` fetched and
    /// decrypted (an entry whose fetch fails carries that error).
    ///
    /// `passcode` is sent only for a `P`-flag link, which needs one
    /// ([`ShlError::PasscodeRequired`] before any request without it).
    pub async fn open(
        &self,
        link: &Shlink,
        passcode: Option<&str>,
        now: u64,
    ) -> Result<Vec<ManifestEntry>> {
        link.check_usable(now)?;
        if link.flags().direct_file {
            let jwe = self.get_direct(link).await?;
            let file = open_direct_file(&jwe, link.key())?;
            return Ok(vec![ManifestEntry {
                index: 0,
                file: ManifestFile {
                    content_type: file.content_type().as_str().to_owned(),
                    body: FileBody::Location(link.url().to_owned()),
                    last_updated: None,
                    status: None,
                    fhir_version: None,
                },
                outcome: Ok(Opened::File(file)),
            }]);
        }
        let body = self.post_manifest(link, passcode).await?;
        let mut entries = Manifest::parse(&body)?.open(link.key());
        for e in &mut entries {
            if let Ok(Opened::Fetch(pending)) = &e.outcome {
                let fetched = self.fetch_file(pending, link).await;
                e.outcome = fetched.map(Opened::File);
            }
        }
        Ok(entries)
    }

    async fn fetch_file(&self, pending: &PendingFile, link: &Shlink) -> Result<DecryptedFile> {
        let jwe = self.get_location(pending).await?;
        pending.open(&jwe, link.key())
    }

    /// `POST`s the manifest request to the link's `url` and returns the response body (at
    /// most [`MAX_MANIFEST_LEN`] bytes). Errors: [`ShlError::PasscodeRequired`],
    /// [`ShlError::PasscodeRejected`] (401, with `remainingAttempts` when sent),
    /// [`ShlError::LinkInactive`] (404), [`ShlError::RateLimited`] (429),
    /// [`ShlError::HttpStatus`], [`ShlError::Timeout`], [`ShlError::Network`],
    /// [`ShlError::TooLarge`].
    pub async fn post_manifest(&self, link: &Shlink, passcode: Option<&str>) -> Result<Vec<u8>> {
        let passcode = if link.flags().passcode {
            Some(passcode.ok_or(ShlError::PasscodeRequired)?)
        } else {
            None
        };
        let mut req = ManifestRequest::new(&self.recipient, passcode)?;
        req.embedded_length_max = Some(MAX_JWE_LEN as u64);
        let url = check_url(link.url(), usize::MAX, "link url")?;
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(req.to_json().to_vec())
            .send()
            .await
            .map_err(net)?;
        let resp = check_status(resp, true).await?;
        read_capped(resp, MAX_MANIFEST_LEN, "manifest").await
    }

    /// `GET`s the single file of a `U`-flag link (`url?recipient=…`) and returns the JWE
    /// text (at most [`MAX_JWE_LEN`] bytes). Errors as [`ShlClient::post_manifest`].
    pub async fn get_direct(&self, link: &Shlink) -> Result<String> {
        let mut url = check_url(link.url(), usize::MAX, "link url")?;
        url.query_pairs_mut()
            .append_pair("recipient", &self.recipient);
        self.get_jwe(url, true).await
    }

    /// `GET`s a manifest file's `location` and returns the JWE text (at most
    /// [`MAX_JWE_LEN`] bytes). A 404 here is [`ShlError::HttpStatus`]: locations are
    /// short-lived, so the caller may request the manifest again for fresh ones (SHL
    /// "`.files.location` links").
    pub async fn get_location(&self, pending: &PendingFile) -> Result<String> {
        let url = check_url(pending.url(), MAX_LOCATION_URL_LEN, "file location")?;
        self.get_jwe(url, false).await
    }

    /// `GET`s an issuer's JWK set from `<iss>/.well-known/jwks.json` (SHC "Determining keys
    /// associated with an issuer"): the same URL rules as the link's (`https://`, or
    /// `http://` to loopback), at most [`MAX_JWKS_LEN`] bytes, parsed with [`Jwks::parse`].
    /// A 404 is [`ShlError::HttpStatus`].
    pub async fn get_issuer_jwks(&self, iss: &str) -> Result<Jwks> {
        if iss.len() > MAX_LOCATION_URL_LEN {
            return Err(ShlError::InvalidUrl {
                what: "issuer",
                reason: "is too long",
            });
        }
        let url = format!("{}/.well-known/jwks.json", iss.trim_end_matches('/'));
        let url = check_url(&url, MAX_LOCATION_URL_LEN, "issuer")?;
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(net)?;
        let resp = check_status(resp, false).await?;
        let body = read_capped(resp, MAX_JWKS_LEN, "JWK set").await?;
        Jwks::parse(&body)
    }

    async fn get_jwe(&self, url: url::Url, link_request: bool) -> Result<String> {
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/jose")
            .send()
            .await
            .map_err(net)?;
        let resp = check_status(resp, link_request).await?;
        let body = read_capped(resp, MAX_JWE_LEN, "JWE").await?;
        String::from_utf8(body).map_err(|_| ShlError::Malformed {
            what: "JWE",
            reason: "the response is not text",
        })
    }
}

/// Maps the status of a response; `link_request` for the link's own URL (manifest or direct
/// file), where 401 and 404 have the meanings SHL gives them.
async fn check_status(resp: Response, link_request: bool) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    match status {
        StatusCode::UNAUTHORIZED if link_request => {
            let remaining_attempts = read_capped(resp, MAX_ERROR_BODY, "error body")
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("remainingAttempts").and_then(Value::as_u64));
            Err(ShlError::PasscodeRejected { remaining_attempts })
        }
        StatusCode::NOT_FOUND if link_request => Err(ShlError::LinkInactive),
        StatusCode::TOO_MANY_REQUESTS => Err(ShlError::RateLimited {
            retry_after: resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        }),
        s => Err(ShlError::HttpStatus { status: s.as_u16() }),
    }
}

/// The body, at most `max` bytes (checked against `Content-Length` first, then while reading).
async fn read_capped(mut resp: Response, max: usize, what: &'static str) -> Result<Vec<u8>> {
    let too_large = ShlError::TooLarge { what, max };
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(net)? {
        if out.len() + chunk.len() > max {
            return Err(too_large);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A transport error, without its URL (the URL is a capability).
fn net(e: reqwest::Error) -> ShlError {
    if e.is_timeout() {
        return ShlError::Timeout;
    }
    let e = e.without_url();
    let mut reason = e.to_string();
    if let Some(src) = std::error::Error::source(&e) {
        reason.push_str(": ");
        reason.push_str(&src.to_string());
    }
    ShlError::Network { reason }
}
