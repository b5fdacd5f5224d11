//! Who has access and what they did: the shares this device made with their grantees, revoke,
//! the delegation tree of colleagues, and the verified access log.

use std::collections::HashMap;

use carekey_client::patient::Patient;
use carekey_core::grant::Scope;
use carekey_vault::AuditEvent;
use serde::{Deserialize, Serialize};

use super::{PatientApp, day, day_and_time, relationship_id};
use crate::error::{AppError, Result};
use crate::events::Throttled;
use crate::ipc::{self, PolicyChoice, ShareCategory, Validate};
use crate::session::settings;
use crate::session::{hex, locked, now};
use crate::share;
use crate::validate;

/// State name of the shares this device made.
pub(super) const SHARES: &str = "carekey/app/patient/shares/v1";

/// A share this device made, as the Access screen lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareView {
    /// Share id (hex).
    pub id: String,
    /// When it was made (unix seconds).
    pub created_at: u64,
    /// Until when access lasts.
    pub expires_at: u64,
    /// Forwarding policy.
    pub policy: PolicyChoice,
    /// Delegation depth under `allowed`.
    pub depth: u8,
    /// Categories present in it.
    pub categories: Vec<ShareCategory>,
    /// FHIR records in it.
    pub records: usize,
    /// Attachments in it.
    pub attachments: usize,
    /// Everyone who was granted access, active or not.
    #[serde(default)]
    pub grantees: Vec<GranteeView>,
}

/// One grantee of a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GranteeView {
    /// The relationship id (hex), for revoke.
    pub relationship: String,
    /// The name their card states.
    pub name: String,
    /// Honest trust wording ("the device you paired with on …" unless attested).
    pub trust: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// Until when.
    pub expires_at: u64,
    /// What their grant lets them read: the scope this phone signed into it.
    #[serde(default)]
    pub scope: GrantScopeView,
}

/// What one grant covers, from the scope the patient signed into it (docs/protocol.md
/// "Grants, scope, delegation"): whole kinds of record plus records listed one by one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantScopeView {
    /// Every kind of record: the whole share.
    Everything,
    /// Only records of these kinds, and `records` more listed one by one.
    Only {
        /// The kinds covered whole.
        categories: Vec<ShareCategory>,
        /// Records the scope lists one by one.
        records: usize,
    },
    /// Saved before this phone kept each grant's scope. Not guessed as "everything": a
    /// confirm narrowed before then would be overstated, and a guess is not what was signed.
    #[default]
    NotRecorded,
}

impl GrantScopeView {
    /// The view of a scope as signed into a grant.
    pub fn of(scope: &Scope) -> Self {
        if scope.categories() == Scope::all().categories() {
            return Self::Everything;
        }
        Self::Only {
            categories: share::scope_categories(scope),
            records: scope.records().len(),
        }
    }
}

/// One line of the access log ("Dr. X fetched 12 records").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLine {
    /// Who (the card name of a grantee or verified delegate, or "unaccounted-for reader").
    pub who: String,
    /// How many objects (manifest reads and records) they fetched.
    pub records: usize,
}

/// A share's verified access log as the Access screen shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogView {
    /// Who fetched how much, in order of first fetch.
    pub lines: Vec<AccessLine>,
    /// SMART Health Link downloads in words ("`<recipient>` downloaded the link at …"; the
    /// name is what the viewer typed, nobody checked it).
    pub downloads: Vec<String>,
    /// Security warnings in words (shown in red): each means the relay or someone it let in
    /// did something the patient did not allow, or the log does not add up.
    pub alerts: Vec<String>,
}

/// One warning of the access log in words.
fn warning_words(
    e: &carekey_client::patient::AccessEvent,
    w: &carekey_client::patient::AccessWarning,
) -> String {
    use carekey_client::patient::AccessWarning as W;
    match w {
        W::RepeatedReceipt { first_seq } => format!(
            "The relay logged a fetch by {} a second time (first logged as entry {first_seq}); \
             it is counted once.",
            e.who
        ),
        W::ClockSkew { .. } => format!(
            "{}'s device clock was far from the relay's at {}: the time shown is the one their \
             device signed.",
            e.who,
            day(e.time)
        ),
        W::UnaccountedReader => format!(
            "Someone you did not give access to fetched records on {} (a reader key no doctor \
             or colleague of this share holds). Revoke this share's doctors to be sure.",
            day(e.time)
        ),
        W::UnnoticedDelegation => "The relay registered a colleague you were not told about \
             (or under a different chain than you were shown). Revoke this share's doctors to \
             be sure."
            .to_owned(),
    }
}

/// One colleague in a share's delegation tree (docs/protocol.md "Forwarding"), as the
/// Access screen lists it under the doctor it hangs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DelegationRow {
    /// Handle for `revoke_delegation` (hex); `None` for a delegation saved before it could
    /// be revoked alone (revoking the doctor it hangs from revokes it).
    pub id: Option<String>,
    /// Who passed the records on (their card's name).
    pub by: String,
    /// To whom (the name the colleague's card states).
    pub colleague: String,
    /// The relationship (hex, as [`GranteeView`] lists it) of the doctor the chain hangs from.
    pub root: String,
    /// 1 = passed on by the doctor you paired with, 2 = one further down.
    pub level: usize,
    /// Until when.
    pub expires_at: u64,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct SharesState {
    pub(super) version: u32,
    pub(super) shares: Vec<ShareView>,
}

impl PatientApp {
    // ------------------------------------------------------------------ access

    /// Every share with its grantees and their status now.
    pub async fn shares(&self) -> Result<Vec<ShareView>> {
        let mut st: SharesState = self
            .vault
            .run(|v| Ok(settings::load(v, SHARES)?.unwrap_or_default()))
            .await?;
        let t = now();
        for s in &mut st.shares {
            for g in &mut s.grantees {
                if g.status == "active" && g.expires_at <= t {
                    g.status = "expired".to_owned();
                }
            }
        }
        Ok(st.shares)
    }

    /// After a restore (or an unlock of a restored vault not reconciled yet): reconciles the
    /// patient's state with the relay (carekey_client `Patient::reconcile`, docs/protocol.md
    /// "Restore and reconciliation"), so a doctor revoked after the backup stays revoked, and
    /// marks such grantees `revoked` on the Shares screen. Nothing to do for a state that was
    /// never restored. The reconciled state is backed up at once (debounced like any change).
    pub(in crate::session) async fn reconcile_restored(&self) -> Result<()> {
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        if !p.needs_reconcile() {
            return Ok(());
        }
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let done = p.reconcile(&sink, &op.cancel).await?;
        // The grantees still active, by the screen's relationship handles, with what their
        // grants say (expiry and scope as signed: the screen's copy may predate the backup).
        let rels = p.relationships();
        let active: HashMap<String, HashMap<String, (u64, GrantScopeView)>> = done
            .iter()
            .map(|d| {
                let grants = p
                    .active_grants(&d.share_id)
                    .into_iter()
                    .filter_map(|gv| {
                        let r = rels.iter().find(|r| r.id == gv.relationship)?;
                        Some((
                            hex(&relationship_id(&r.card, r.paired_at)),
                            (gv.expires_at, GrantScopeView::of(&gv.scope)),
                        ))
                    })
                    .collect();
                (hex(d.share_id.as_bytes()), grants)
            })
            .collect();
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                for s in &mut st.shares {
                    let Some(grants) = active.get(&s.id) else {
                        continue;
                    };
                    for gr in s.grantees.iter_mut().filter(|g| g.status == "active") {
                        match grants.get(&gr.relationship) {
                            Some((expires_at, scope)) => {
                                gr.expires_at = *expires_at;
                                gr.scope = scope.clone();
                            }
                            None => gr.status = "revoked".to_owned(),
                        }
                    }
                }
                settings::save(v, SHARES, &st)
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(())
    }

    /// Revokes one grantee of one share (token revoked at once, then a re-key; docs/protocol.md
    /// "Revocation"). They keep what they already fetched; new versions are under a new key
    /// they do not have.
    pub async fn revoke(&self, args: ipc::Revoke) -> Result<()> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.share)?);
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let index = find_relationship(p, &args.relationship)
            .ok_or_else(|| AppError::not_found("that doctor"))?;
        let name = p
            .relationship(&index)
            .map(|r| r.card.body.name.clone())
            .unwrap_or_default();
        p.revoke(&share_id, &index, &sink, &op.cancel).await?;
        let (share_hex, rel) = (args.share, args.relationship);
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                if let Some(s) = st.shares.iter_mut().find(|s| s.id == share_hex) {
                    for gr in s.grantees.iter_mut().filter(|g| g.relationship == rel) {
                        gr.status = "revoked".to_owned();
                    }
                }
                settings::save(v, SHARES, &st)?;
                v.log_event(&AuditEvent::Revoked {
                    share_id: share_hex,
                    grantee: name,
                })?;
                Ok(())
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(())
    }

    /// Everyone a doctor of this share passed the records on to, verified against the
    /// patient's own grants (docs/protocol.md "Forwarding"). A delegation the relay registered
    /// that the patient cannot account for is the error (a tamper alert), after the good ones
    /// are saved.
    pub async fn delegations(&self, args: ipc::IdRef) -> Result<Vec<DelegationRow>> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.id)?);
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let found = p.delegations(&share_id).await;
        let t = now();
        let rows = found.map(|tree| {
            tree.into_iter()
                .map(|d| DelegationRow {
                    id: d.id.map(|id| id.to_string()),
                    by: d.by,
                    colleague: d.colleague,
                    root: p
                        .relationship(&d.root_relationship)
                        .map(|r| hex(&relationship_id(&r.card, r.paired_at)))
                        .unwrap_or_default(),
                    level: d.level,
                    expires_at: d.expires_at,
                    status: if d.revoked {
                        "revoked"
                    } else if d.expires_at <= t {
                        "expired"
                    } else {
                        "active"
                    }
                    .to_owned(),
                })
                .collect::<Vec<_>>()
        });
        // The verified notices are kept either way.
        let g = self.commit(g, |_| Ok(())).await?;
        drop(g);
        Ok(rows?)
    }

    /// Revokes one colleague (and everyone they passed the records on to) on one share: their
    /// reader token at once, then a re-key the others receive (docs/protocol.md "Revocation
    /// and expiry"). They keep what they already fetched.
    pub async fn revoke_delegation(&self, args: ipc::RevokeDelegation) -> Result<()> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.share)?);
        let id = carekey_client::patient::DelegationId(validate::hex_id(
            "delegation",
            &args.delegation,
        )?);
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let name = p
            .delegations(&share_id)
            .await?
            .into_iter()
            .find(|d| d.id == Some(id))
            .map(|d| d.colleague)
            .ok_or_else(|| AppError::not_found("that colleague"))?;
        p.revoke_delegation(&share_id, &id, &sink, &op.cancel)
            .await?;
        let share_hex = args.share;
        let g = self
            .commit(g, move |v| {
                Ok(v.log_event(&AuditEvent::Revoked {
                    share_id: share_hex,
                    grantee: name,
                })?)
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(())
    }

    /// The verified access log of a share in words ("Dr. X fetched 12 records"), with every
    /// security warning the reading raised (docs/protocol.md "Audit chains": a repeated
    /// receipt, a reader nobody granted, a delegation without its notice, a far-off clock).
    pub async fn access_log(&self, args: ipc::IdRef) -> Result<AccessLogView> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.id)?);
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let events = p.access_log(&share_id).await?;
        let lines = carekey_client::patient::summarize(&events)
            .into_iter()
            .map(|s| AccessLine {
                who: s.who,
                records: s.fetched,
            })
            .collect();
        let downloads = events
            .iter()
            .filter(|e| {
                matches!(
                    e.what,
                    carekey_client::patient::AccessKind::LinkDownloaded { .. }
                )
            })
            .map(|e| e.sentence(&day_and_time(e.time)))
            .collect();
        let mut alerts: Vec<String> = events
            .iter()
            .flat_map(|e| e.warnings.iter().map(move |w| warning_words(e, w)))
            .collect();
        for e in p.take_alerts() {
            let msg = AppError::from(e).message;
            if !alerts.contains(&msg) {
                alerts.push(msg);
            }
        }
        alerts.dedup();
        let g = self.commit(g, |_| Ok(())).await?;
        drop(g);
        Ok(AccessLogView {
            lines,
            downloads,
            alerts,
        })
    }
}

fn find_relationship(p: &Patient, id: &str) -> Option<carekey_client::RelationshipId> {
    p.relationships()
        .into_iter()
        .find(|r| hex(&relationship_id(&r.card, r.paired_at)) == id)
        .map(|r| r.id)
}
