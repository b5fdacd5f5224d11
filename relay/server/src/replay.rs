//! Fetch receipt replay refusal (docs/relay-formats.md "Fetch receipt"; docs/relay.md
//! "Fetch group commit").
//!
//! A fetch receipt is signed once by the doctor's device with a fresh random nonce and is good
//! for `--receipt-skew-secs` either side of its signed time. Before this, whoever saw a receipt
//! (a TLS-terminating proxy, a log, the client retrying) could send it again within that window
//! and the patient's audit chain got the same fetch twice. Now every receipt appended to a chain
//! is recorded by (reader key, nonce) in the same transaction, under the share lock; a receipt
//! already recorded is refused with 409 `receipt_replayed` and logged nothing. Records are kept
//! while the receipt could still pass the time check and swept afterwards ([`sweep`]).

use crate::encoding::Reader;
use crate::error::{RelayError, Result};
use crate::storage::Tx;

/// The refusal of a receipt already logged.
pub fn replayed() -> RelayError {
    RelayError::conflict(
        "receipt_replayed",
        "this fetch receipt was already used; sign a fresh one for every request",
    )
}

/// Reader key, signed time and nonce of a version-1 receipt (relay-formats.md: `version ||
/// share_id[16] || str16(object_id) || reader_key[32] || time u64 || nonce[16] || sig`).
pub fn identity(receipt: &[u8]) -> Result<([u8; 32], u64, [u8; 16])> {
    let mut r = Reader::new("fetch receipt", receipt);
    let _version = r.u8()?;
    let _share = r.array::<16>()?;
    let _object = r.str16()?;
    let reader = r.array::<32>()?;
    let time = r.u64()?;
    let nonce = r.array::<16>()?;
    Ok((reader, time, nonce))
}

/// Records `receipt` as logged; `false` if it already was (a replay). Runs in the transaction
/// that appends the receipt, after the share row is locked.
pub fn claim(tx: &mut dyn Tx, receipt: &[u8]) -> Result<bool> {
    let (reader, time, nonce) = identity(receipt)?;
    let n = tx.exec(
        "INSERT INTO receipt_nonces (reader_key, nonce, time) VALUES ($1, $2, $3) \
         ON CONFLICT (reader_key, nonce) DO NOTHING",
        &[
            (&reader).into(),
            (&nonce).into(),
            i64::try_from(time).unwrap_or(i64::MAX).into(),
        ],
    )?;
    Ok(n == 1)
}

/// Drops the records of receipts signed before `now - max_skew` (they fail the time check
/// now); returns how many.
pub fn sweep(tx: &mut dyn Tx, now: u64, max_skew: u64) -> Result<u64> {
    let cutoff = i64::try_from(now.saturating_sub(max_skew)).unwrap_or(i64::MAX);
    tx.exec(
        "DELETE FROM receipt_nonces WHERE time < $1",
        &[cutoff.into()],
    )
}
