//! Where the client may send a request: the URL rules for a link's manifest `url`, a file's
//! `location` and an issuer's key set (docs/shl.md "What is refused": https only, plain http
//! only to loopback for local tests).

use crate::error::{Result, ShlError};

/// Validates an absolute URL the client will send a request to: `https://` with a host, or
/// `http://` to a loopback host (127.0.0.0/8, `::1`, `localhost`: local test servers); no user
/// info; no whitespace or control characters (the `url` crate would silently drop tabs and
/// newlines, so the text sent would differ from the text shown).
pub(crate) fn check_url(s: &str, max: usize, what: &'static str) -> Result<url::Url> {
    let bad = |reason| ShlError::InvalidUrl { what, reason };
    if s.len() > max {
        return Err(bad("too long"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    let url = url::Url::parse(s).map_err(|_| bad("not an absolute URL"))?;
    let Some(host) = url.host() else {
        return Err(bad("has no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("has user info"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&host) => Ok(url),
        "http" => Err(bad("plain http is only allowed to a loopback host")),
        _ => Err(bad("not https")),
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://ex.org/m", 100, "u").is_ok());
        assert!(check_url("http://127.0.0.1:9/m", 100, "u").is_ok());
        assert!(check_url("http://[::1]/m", 100, "u").is_ok());
        assert!(check_url("http://ex.org/m", 100, "u").is_err());
        assert!(check_url("https://u:p@ex.org/m", 100, "u").is_err());
        assert!(check_url("https://ex.org/\tm", 100, "u").is_err());
        assert!(check_url("ftp://ex.org/m", 100, "u").is_err());
        assert!(check_url("/m", 100, "u").is_err());
    }
}
