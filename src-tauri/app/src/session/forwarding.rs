//! Forwarding to a colleague (docs/protocol.md "Forwarding"), as the apps' screens run it.
//!
//! ## Doctor-to-doctor pairing
//! The colleague's device makes a signed invite (its card, a fresh reader key, a mailbox) and
//! shows it as a QR or text: `CAREKEY-INVITE:` + uppercase base32 (RFC 4648, no padding) of
//! the invite's wire bytes, so the QR uses alphanumeric mode. Both devices show the invite's
//! **check code**: the first 80 bits of `SHA-256(INVITE_CODE_LABEL || invite bytes)` as four
//! groups of four base32 characters. The invite is signed by the colleague, so a changed invite
//! fails; the code is what tells the forwarding doctor that the invite it holds is the one the
//! colleague's own screen shows (an attacker's whole replacement invite would need about 2^80
//! work to match it).
//!
//! ## Policies
//! - `never`: the action is refused and says why.
//! - `ask`: a signed forward request goes to the patient; the patient approves on the phone
//!   and grants the colleague directly; the forwarding doctor's screen says "waiting for the
//!   patient".
//! - `allowed`: the doctor delegates at once (a chain link the relay checks).
//!
//! Either way the colleague's app waits on its invite ([`DoctorApp::wait_for_introduction`])
//! and then reads the share like any other patient link.

use carekey_client::InviteId;
use carekey_client::doctor::ForwardRights;
use carekey_core::forward::ColleagueInvite;
use carekey_core::grant::Policy;
use carekey_core::wire::Wire;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::clinics::TrustList;
use super::doctor::DoctorApp;
use super::patient::PatientApp;
use super::{hex, locked};
use crate::error::{AppError, Result};
use crate::ipc::{self, ShareCategory, Validate};
use crate::qr;
use crate::share;

/// Scheme of a colleague invite's text.
pub const INVITE_SCHEME: &str = "CAREKEY-INVITE:";
/// Domain label of an invite's check code (see the module docs).
pub const INVITE_CODE_LABEL: &[u8] = b"carekey-app/invite-code/v1\0";
/// How long a colleague invite stays valid (seconds).
pub const INVITE_VALID_SECS: u64 = 15 * 60;
/// Longest invite text accepted.
pub(crate) const MAX_INVITE_TEXT: usize = crate::ipc::MAX_INVITE_TEXT;

/// The invite text of a signed invite.
pub fn invite_text(invite: &ColleagueInvite) -> String {
    format!(
        "{INVITE_SCHEME}{}",
        data_encoding::BASE32_NOPAD.encode(&invite.to_bytes())
    )
}

/// The check code both doctors compare, `ABCD-EFGH-IJKL-MNOP`.
pub fn invite_code(invite: &ColleagueInvite) -> String {
    let mut h = Sha256::new();
    h.update(INVITE_CODE_LABEL);
    h.update(invite.to_bytes());
    let d = h.finalize();
    let s = data_encoding::BASE32_NOPAD.encode(&d[..10]);
    let groups: Vec<&str> = (0..4).map(|i| &s[i * 4..i * 4 + 4]).collect();
    groups.join("-")
}

/// Parses an invite's text (scheme case-insensitive, spaces and line breaks ignored).
pub fn parse_invite(text: &str) -> Result<ColleagueInvite> {
    let bad = || AppError::invalid_input("invite: this is not a colleague's Carekey invite");
    if text.len() > MAX_INVITE_TEXT {
        return Err(bad());
    }
    let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let head = t.get(..INVITE_SCHEME.len()).ok_or_else(bad)?;
    if !head.eq_ignore_ascii_case(INVITE_SCHEME) {
        return Err(bad());
    }
    let body = t[INVITE_SCHEME.len()..].to_ascii_uppercase();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| bad())?;
    ColleagueInvite::from_bytes(&bytes).map_err(|_| bad())
}

/// What the colleague's screen shows: the QR for the forwarding doctor, and the code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InviteView {
    /// The invite to wait on (hex).
    pub invite: String,
    /// The QR (SVG).
    pub qr_svg: String,
    /// The text (for "copy").
    pub text: String,
    /// The check code both screens show.
    pub code: String,
    /// Until when the invite works (unix seconds).
    pub expires_at: u64,
}

/// What the forwarding doctor's screen shows after reading an invite, before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColleagueView {
    /// The name the colleague's card states.
    pub name: String,
    /// Their licence id as stated.
    pub licence: Option<String>,
    /// Honest wording of the card's trust.
    pub trust: String,
    /// The check code: it must equal the one on the colleague's screen.
    pub code: String,
}

/// What `forward` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ForwardOutcome {
    /// Policy `ask`: the request went to the patient; the colleague gets access if they
    /// approve.
    WaitingForPatient,
    /// Policy `allowed`: the colleague was given access now.
    Forwarded,
}

/// A forward request as the patient's Access screen lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardRequestRow {
    /// Request id (hex) for `answer_forward`.
    pub id: String,
    /// The asking doctor's name.
    pub from: String,
    /// The colleague's name, as their card states it.
    pub colleague: String,
    /// Honest wording of the colleague card's trust.
    pub colleague_trust: String,
    /// The share (hex).
    pub share: String,
    /// The doctor's reason.
    pub reason: String,
    /// The kinds of records the colleague would see (whole categories).
    pub categories: Vec<ShareCategory>,
    /// Records picked one by one that the colleague would also see.
    pub records: usize,
}

/// A colleague's card in words: "attested by `<clinic>`" only under a clinic key on this
/// device's trust list, otherwise self-asserted.
fn card_trust(trust: &TrustList, card: &carekey_core::keys::Card) -> String {
    trust.wording(
        card,
        "self-asserted card: the name is what their device says",
    )
}

impl DoctorApp {
    /// As the colleague: makes an invite on `relay_url` (the forwarding doctor's relay) and
    /// returns its QR and check code.
    pub async fn colleague_invite(&self, args: ipc::SetRelay) -> Result<InviteView> {
        args.validate()?;
        let mut g = self.service_guard().await?;
        let d = g.as_mut().ok_or_else(locked)?;
        let inv = d.invite(&args.relay_url, INVITE_VALID_SECS).await?;
        let g = self.commit_guard(g).await?;
        drop(g);
        let text = invite_text(&inv.invite);
        let svg = qr::render_svg(&text, "QR code to show the forwarding doctor")?;
        Ok(InviteView {
            invite: inv.id.to_string(),
            qr_svg: svg.svg,
            text,
            code: invite_code(&inv.invite),
            expires_at: inv.invite.expires_at,
        })
    }

    /// As the colleague: waits for the introduction (from the patient under `ask`, from the
    /// forwarding doctor under `allowed`) holding no lock, then stores the new link. Returns
    /// the patient link id.
    pub async fn wait_for_introduction(&self, args: ipc::Wait) -> Result<String> {
        args.validate()?;
        let id: InviteId = args
            .id
            .parse()
            .map_err(|_| AppError::invalid_input("id: not an invite id"))?;
        let waiter = {
            let g = self.service_guard().await?;
            g.as_ref().ok_or_else(locked)?.invite_waiter(&id)?
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait_secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(carekey_client::ClientError::NoAnswer.into());
            }
            let msgs = waiter.wait(left.as_secs().clamp(1, 25)).await?;
            if msgs.is_empty() {
                continue;
            }
            let mut g = self.service_guard().await?;
            let d = g.as_mut().ok_or_else(locked)?;
            if let Some(link) = d.open_introduction_messages(&id, msgs).await? {
                let g = self.commit_guard(g).await?;
                drop(g);
                return self.record_link(&link).await;
            }
        }
    }

    /// As the forwarding doctor: reads a colleague's invite and shows who it is and the code
    /// to compare with the colleague's screen.
    pub async fn read_invite(&self, args: ipc::ScanText) -> Result<ColleagueView> {
        args.validate()?;
        let trust = self.trust_list().await?;
        let inv = parse_invite(&args.text)?;
        Ok(ColleagueView {
            name: inv.card.body.name.clone(),
            licence: inv.card.body.licence_id.clone(),
            trust: card_trust(&trust, &inv.card),
            code: invite_code(&inv),
        })
    }

    /// As the forwarding doctor: forwards one patient's share to the colleague, as the
    /// patient's policy allows: refused under `never`, a request to the patient under `ask`,
    /// a delegation at once under `allowed`.
    pub async fn forward(&self, args: ipc::Forward) -> Result<ForwardOutcome> {
        args.validate()?;
        let invite = parse_invite(&args.invite)?;
        let mut g = self.service_guard().await?;
        let d = g.as_mut().ok_or_else(locked)?;
        let link = self
            .link_of(d, &args.patient)
            .ok_or_else(|| AppError::not_found("that patient"))?;
        let rights = d
            .forward_rights(&link)
            .ok_or_else(|| AppError::not_found("that patient"))?;
        // Empty: everything this doctor holds. Otherwise the part of it in those categories.
        let scope = if args.categories.is_empty() {
            None
        } else {
            let cats: Vec<_> = args
                .categories
                .iter()
                .map(|c| share::category_of(*c))
                .collect();
            let (s, covered) = d
                .scope_within(&link, &cats)
                .ok_or_else(|| AppError::not_found("that patient"))?;
            if covered == 0 {
                return Err(AppError::invalid_input(
                    "categories: you hold no records of those kinds for this patient (refresh the chart first)",
                ));
            }
            Some(s)
        };
        let outcome = match rights {
            ForwardRights {
                policy: Policy::Never,
                ..
            } => {
                return Err(AppError::new(
                    "not_allowed",
                    "the patient does not allow forwarding these records",
                ));
            }
            ForwardRights {
                policy: Policy::Ask,
                ..
            } => {
                d.request_forward(&link, &invite, scope, &args.reason)
                    .await?;
                ForwardOutcome::WaitingForPatient
            }
            ForwardRights { depth: 0, .. } => {
                return Err(AppError::new(
                    "not_allowed",
                    "you may not forward further: the patient allowed no more levels",
                ));
            }
            ForwardRights { .. } => {
                d.delegate(&link, &invite, scope, None).await?;
                ForwardOutcome::Forwarded
            }
        };
        let g = self.commit_guard(g).await?;
        drop(g);
        Ok(outcome)
    }
}

impl PatientApp {
    /// The doctors' requests to forward, waiting for the patient's answer.
    pub async fn forward_requests(&self) -> Result<Vec<ForwardRequestRow>> {
        let trust = self.trust_list().await?;
        let g = self.service_guard().await?;
        let p = g.as_ref().ok_or_else(locked)?;
        Ok(p.forward_requests()
            .into_iter()
            .map(|r| ForwardRequestRow {
                id: r.id.to_string(),
                from: r.from_name,
                colleague: r.colleague.body.name.clone(),
                colleague_trust: card_trust(&trust, &r.colleague),
                share: hex(r.share_id.as_bytes()),
                categories: share::scope_categories(&r.scope),
                records: r.scope.records().len(),
                reason: r.reason,
            })
            .collect())
    }
}
