//! Saving the client's state in the device's vault (shares, grants, relationships, pins,
//! cursors), so a restart of the app remembers everything (issue #5, flow 1: "the relationship
//! is remembered on both sides").
//!
//! The state is a versioned binary value (the core's `wire` conventions: version byte first,
//! trailing bytes rejected) stored with [`carekey_vault::Vault::put_state`], i.e. sealed under
//! the vault key and bound to its name. Apps save after every call that changes state; the
//! owner-write counters resume at `max(saved, now in µs)` so a state saved a few writes late
//! still writes above anything the relay has seen (the relay only needs "strictly higher").

use carekey_core::keys::SigningSecret;
use carekey_core::wire::{Reader, Writer};

use crate::error::{ClientError, Result};
use crate::relay::{MailboxAddress, OwnMailbox};

/// Version byte of the saved states.
pub(crate) const STATE_VERSION: u8 = 1;

pub(crate) fn corrupt(_: carekey_core::Error) -> ClientError {
    ClientError::Tampered(carekey_core::Error::Malformed {
        what: "saved client state",
        reason: "does not decode",
    })
}

pub(crate) fn write_address(w: &mut Writer, a: &MailboxAddress) {
    w.raw(&a.to_bytes());
}

pub(crate) fn read_address(r: &mut Reader<'_>) -> Result<MailboxAddress> {
    MailboxAddress::from_bytes(r.take(48).map_err(corrupt)?)
}

pub(crate) fn write_mailbox(w: &mut Writer, m: &OwnMailbox) {
    write_address(w, &m.address);
    w.raw(m.read_token.as_slice());
    w.u64(m.cursor);
}

pub(crate) fn read_mailbox(r: &mut Reader<'_>) -> Result<OwnMailbox> {
    Ok(OwnMailbox {
        address: read_address(r)?,
        read_token: zeroize::Zeroizing::new(r.array().map_err(corrupt)?),
        cursor: r.u64().map_err(corrupt)?,
    })
}

pub(crate) fn write_secret(w: &mut Writer, s: &SigningSecret) {
    w.raw(s.expose_secret());
}

pub(crate) fn read_secret(r: &mut Reader<'_>) -> Result<SigningSecret> {
    let seed = zeroize::Zeroizing::new(r.array::<32>().map_err(corrupt)?);
    Ok(SigningSecret::from_seed(&seed))
}

pub(crate) fn count(n: usize) -> u32 {
    // Collections in a state are bounded far below 2^32 by what a device can hold.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Unix time in microseconds: the floor for resumed owner-write counters.
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
