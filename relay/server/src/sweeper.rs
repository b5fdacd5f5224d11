//! Background TTL sweeper (issue 4 "TTL"): deletes expired shares (leaving 410 tombstones),
//! marks expired tokens (audit kind 8), deletes expired mailboxes, stale uploads and old
//! tombstones, and drops the bytes of backup slots not written for `backup_ttl_secs`. Every
//! deletion releases its quota (crate::quota).

use std::collections::BTreeMap;

use crate::audit::{self, Kind};
use crate::backup;
use crate::credential::{STATUS_ACTIVE, STATUS_EXPIRED};
use crate::encoding::to_db;
use crate::error::{RelayError, Result};
use crate::mailbox;
use crate::quota::{self, QuotaLimits, Usage};
use crate::replay;
use crate::share;
use crate::state::AppState;

/// Rows handled per sweep step.
const BATCH: i64 = 500;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Shares deleted.
    pub shares: u64,
    /// Tokens marked expired.
    pub tokens: u64,
    /// Pairing and relationship mailboxes deleted.
    pub mailboxes: u64,
    /// Stale uploads deleted.
    pub uploads: u64,
    /// Backup slots whose bytes expired (not written for `backup_ttl_secs`).
    pub backups: u64,
    /// SMART Health Links past their `exp`.
    pub links: u64,
}

/// Runs one sweep.
pub async fn sweep_once(state: &AppState) -> Result<Swept> {
    let now = state.clock.now();
    let now_db = to_db("now", now)?;
    let cfg = &state.config;
    let tomb_until = to_db("time", now.saturating_add(cfg.tombstone_secs))?;
    let tomb_cutoff = to_db("time", now.saturating_sub(cfg.tombstone_secs))?;
    let upload_cutoff = to_db("time", now.saturating_sub(cfg.upload_ttl_secs))?;
    let skew = cfg.receipt_max_skew_secs;
    let mut out = Swept::default();

    let expired: Vec<[u8; 16]> = state
        .storage
        .transact(move |tx| {
            tx.query(
                "SELECT share_id FROM shares WHERE expires_at <= $1 LIMIT $2",
                &[now_db.into(), BATCH.into()],
            )?
            .iter()
            .map(|r| r[0].array())
            .collect()
        })
        .await?;
    for sid in expired {
        state
            .storage
            .transact(move |tx| {
                let sql = format!(
                    "SELECT expires_at FROM shares WHERE share_id = $1{}",
                    tx.lock_clause()
                );
                let row = tx.query_opt(&sql, &[(&sid).into()])?;
                if row
                    .map(|r| r[0].int())
                    .transpose()?
                    .is_some_and(|e| e <= now_db)
                {
                    share::purge(tx, &sid, tomb_until)?;
                }
                Ok(())
            })
            .await?;
        out.shares += 1;
    }

    let tokens: Vec<([u8; 16], [u8; 32])> = state
        .storage
        .transact(move |tx| {
            tx.query(
                "SELECT share_id, token_hash FROM tokens WHERE status = $1 AND expires_at <= $2 LIMIT $3",
                &[STATUS_ACTIVE.into(), now_db.into(), BATCH.into()],
            )?
            .iter()
            .map(|r| Ok((r[0].array()?, r[1].array()?)))
            .collect()
        })
        .await?;
    let mut by_share: BTreeMap<[u8; 16], Vec<[u8; 32]>> = BTreeMap::new();
    for (s, t) in tokens {
        by_share.entry(s).or_default().push(t);
    }
    for (sid, hashes) in by_share {
        let n = state
            .storage
            .transact(move |tx| {
                let sql = format!("SELECT 1 FROM shares WHERE share_id = $1{}", tx.lock_clause());
                if tx.query_opt(&sql, &[(&sid).into()])?.is_none() {
                    return Ok(0);
                }
                let mut n = 0;
                for h in hashes {
                    let changed = tx.exec(
                        "UPDATE tokens SET status = $3 WHERE share_id = $1 AND token_hash = $2 AND status = $4 \
                         AND expires_at <= $5",
                        &[(&sid).into(), (&h).into(), STATUS_EXPIRED.into(), STATUS_ACTIVE.into(), now_db.into()],
                    )?;
                    if changed > 0 {
                        audit::append(tx, &sid, now, Kind::TokenExpired, &h)?;
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await?;
        out.tokens += n;
    }

    let (mailboxes, uploads) = state
        .storage
        .transact(move |tx| {
            mailbox::release_pairings(tx, "expires_at <= $1", &[now_db.into()])?;
            let mut m = tx.exec("DELETE FROM pairings WHERE expires_at <= $1", &[now_db.into()])?;
            mailbox::release_mailboxes(tx, "expires_at <= $1", &[now_db.into()])?;
            tx.exec(
                "DELETE FROM messages WHERE mailbox_id IN (SELECT mailbox_id FROM mailboxes WHERE expires_at <= $1)",
                &[now_db.into()],
            )?;
            m += tx.exec("DELETE FROM mailboxes WHERE expires_at <= $1", &[now_db.into()])?;
            tx.exec("DELETE FROM share_tombstones WHERE until_at <= $1", &[now_db.into()])?;
            crate::token::sweep_groups(tx, tomb_cutoff)?;
            replay::sweep(tx, now, skew)?;
            tx.exec(
                "DELETE FROM tokens WHERE status <> $1 AND expires_at <= $2",
                &[STATUS_ACTIVE.into(), tomb_cutoff.into()],
            )?;
            let stale = tx.query(
                "SELECT upload_id, share_id, bytes FROM uploads WHERE created_at <= $1 LIMIT $2",
                &[upload_cutoff.into(), BATCH.into()],
            )?;
            let mut u = 0;
            let mut usage = Usage::default();
            for r in stale {
                let sid: [u8; 16] = r[1].array()?;
                usage.add(quota::share_client(tx, &sid)?, -1, -r[2].int()?);
                tx.exec("DELETE FROM upload_chunks WHERE upload_id = $1", &[r[0].clone()])?;
                tx.exec("DELETE FROM uploads WHERE upload_id = $1", &[r[0].clone()])?;
                tx.exec(
                    "UPDATE shares SET bytes_used = CASE WHEN bytes_used > $2 THEN bytes_used - $2 ELSE 0 END \
                     WHERE share_id = $1",
                    &[r[1].clone(), r[2].clone()],
                )?;
                u += 1;
            }
            usage.apply(tx, &QuotaLimits::NONE)?;
            Ok((m, u))
        })
        .await?;
    out.mailboxes = mailboxes;
    out.uploads = uploads;
    out.links = state
        .storage
        .transact(move |tx| crate::health_link::store::sweep(tx, now, BATCH))
        .await?;

    if cfg.backup_ttl_secs > 0 {
        let cutoff = to_db("time", now.saturating_sub(cfg.backup_ttl_secs))?;
        // Slots emptied (by expiry or their owner) and not written for another tombstone
        // period go entirely; until then they keep refusing replays of old writes.
        let gone = to_db(
            "time",
            now.saturating_sub(cfg.backup_ttl_secs.saturating_add(cfg.tombstone_secs)),
        )?;
        out.backups = state
            .storage
            .transact(move |tx| {
                let n = backup::expire_stale(tx, cutoff, BATCH)?;
                tx.exec(
                    "DELETE FROM backups WHERE deleted = 1 AND updated_at <= $1",
                    &[gone.into()],
                )?;
                Ok(n)
            })
            .await?;
    }
    state.notifier.prune();
    state.limiter.prune(&state.config);
    state.metrics.sweeps.inc();
    Ok(out)
}

/// Spawns the periodic sweeper.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(state.config.sweep_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match sweep_once(&state).await {
                Ok(s) => tracing::debug!(
                    shares = s.shares,
                    tokens = s.tokens,
                    mailboxes = s.mailboxes,
                    "swept"
                ),
                Err(RelayError::Storage(e)) => tracing::warn!(error = %e, "sweep failed"),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    })
}
