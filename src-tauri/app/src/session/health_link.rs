//! "Share as SMART Health Link": a share published as a standard `shlink:/` any clinic's
//! SHL viewer opens (docs/shl.md "Publishing"), as the patient app's screens run it.
//!
//! The phone encrypts the share's FHIR records, their attachments inline, under a fresh key the
//! link carries (files over the relay's size caps are left out, and the answer says how many
//! and why); the relay stores only the JWE files and a hash of the passcode, counts failed
//! attempts and logs each download, with the name the viewer typed, into the share's signed
//! audit log. The screens say
//! plainly what that means ([`carekey_client::patient::link_warning`]).

use carekey_client::patient::{LinkOptions, LinkPasscode, link_warning};
use serde::Serialize;

use super::patient::PatientApp;
use super::patient::day;
use super::{locked, now};
use crate::error::{AppError, Result};
use crate::ipc::{self, Validate};
use crate::qr;
use crate::validate;

/// A link just published: its QR, the passcode to tell the clinic, the honest warning.
/// `Debug` leaves out the link and the passcode (whoever has both reads the records).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct PublishedLinkView {
    /// Handle for `delete_link` (64 hex).
    pub id: String,
    /// The QR of the `shlink:/` text, as SVG.
    pub qr_svg: String,
    /// The `shlink:/` text ("copy link").
    pub shlink: String,
    /// The passcode, when the link has one.
    pub passcode: Option<String>,
    /// When it stops answering (unix seconds).
    pub expires_at: u64,
    /// FHIR files published.
    pub files: usize,
    /// Attachments (PDFs, images) written inline into their records (docs/shl.md
    /// "Publishing").
    pub attachments: usize,
    /// Attachments left out for the relay's size caps; `left_out_note` says why.
    pub left_out: usize,
    /// "1 attached file was left out: 1 is larger than the 2.4 MB one file of a link holds."
    /// (fixed wording, no file names), when any was.
    pub left_out_note: Option<String>,
    /// "Anyone with this code and passcode can read these records until …".
    pub warning: String,
}

impl std::fmt::Debug for PublishedLinkView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedLinkView")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("files", &self.files)
            .field("attachments", &self.attachments)
            .field("left_out", &self.left_out)
            .finish_non_exhaustive()
    }
}

/// One published link as the Access screen lists it (no key, no passcode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkRow {
    /// Handle for `delete_link`.
    pub id: String,
    /// Its label.
    pub label: Option<String>,
    /// When it stops answering.
    pub expires_at: u64,
    /// `active` or `expired`.
    pub status: String,
    /// FHIR files it holds.
    pub files: usize,
}

impl PatientApp {
    /// Publishes a share's FHIR records as a SMART Health Link and returns its QR.
    pub async fn publish_link(&self, args: ipc::PublishLink) -> Result<PublishedLinkView> {
        self.publish_link_with(args, None, carekey_client::patient::DEFAULT_MAX_ATTEMPTS)
            .await
    }

    /// [`Self::publish_link`] with the two choices the command line offers besides the
    /// screen's (docs/cli.md "SMART Health Links"): a passcode the patient chose (with
    /// `args.passcode`; the client checks it) and the wrong passcodes before the link dies.
    pub async fn publish_link_with(
        &self,
        args: ipc::PublishLink,
        chosen_passcode: Option<String>,
        max_attempts: u32,
    ) -> Result<PublishedLinkView> {
        args.validate()?;
        let share = carekey_client::ShareId(validate::hex_id("share", &args.share)?);
        // A preset longer than what is left of the share ends with the share: the link cannot
        // outlive it (the relay caps it too), and a patient who picked "1 week" on a share
        // ending tomorrow means "as long as it can"; the answer's `expires_at` says which.
        let share_ends = self
            .shares()
            .await?
            .into_iter()
            .find(|s| s.id == args.share)
            .map(|s| s.expires_at)
            .ok_or_else(|| AppError::not_found("that share"))?;
        let opts = LinkOptions {
            passcode: match (args.passcode, chosen_passcode) {
                (false, _) => LinkPasscode::Off,
                (true, Some(p)) => LinkPasscode::Chosen(p),
                (true, None) => LinkPasscode::Generated,
            },
            expires_at: now().saturating_add(args.expires_in_secs).min(share_ends),
            max_attempts,
            label: args.label,
            records: Vec::new(),
        };
        let mut g = self.service_guard().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let link = p.publish_link(&share, opts).await?;
        let g = self.commit_and_back_up(g).await?;
        drop(g);
        let svg = qr::render_svg(&link.shlink, "SMART Health Link QR code")?;
        Ok(PublishedLinkView {
            warning: link_warning(&day(link.expires_at)),
            id: link.id,
            qr_svg: svg.svg,
            shlink: link.shlink,
            passcode: link.passcode,
            expires_at: link.expires_at,
            files: link.files,
            attachments: link.attachments,
            left_out: link.left_out,
            left_out_note: link.left_out_note,
        })
    }

    /// The links published from one share, newest last.
    pub async fn links(&self, args: ipc::IdRef) -> Result<Vec<LinkRow>> {
        args.validate()?;
        let share = carekey_client::ShareId(validate::hex_id("share", &args.id)?);
        let g = self.service_guard().await?;
        let p = g.as_ref().ok_or_else(locked)?;
        Ok(p.links(Some(&share))
            .into_iter()
            .map(|l| LinkRow {
                status: if l.expired { "expired" } else { "active" }.to_owned(),
                id: l.id,
                label: l.label,
                expires_at: l.expires_at,
                files: l.files,
            })
            .collect())
    }

    /// Deletes a link at the relay: no new downloads (copies already made stay copies).
    pub async fn delete_link(&self, args: ipc::LinkRef) -> Result<()> {
        args.validate()?;
        let mut g = self.service_guard().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        if !p.links(None).iter().any(|l| l.id == args.id) {
            return Err(AppError::not_found("that link"));
        }
        p.delete_link(&args.id).await?;
        let g = self.commit_and_back_up(g).await?;
        drop(g);
        Ok(())
    }
}
