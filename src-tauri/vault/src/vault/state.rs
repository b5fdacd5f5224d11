//! The apps' own sealed state values (migration 0002, `app_state`).

use carekey_core::envelope::ObjectKind;
use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::{T_STATE, Vault, open_bytes, seal_bytes, tagged, tampered};
use crate::error::{Result, VaultError};

impl Vault {
    /// Stores the app's state value `name` (shares, grants, relationships, pins), replacing
    /// the previous one, in one durable transaction. `name` is MAC-hashed; `value` is sealed.
    pub fn put_state(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_state.mac(name.as_bytes());
        let sealed = seal_bytes(
            &st.keys.vault,
            ObjectKind::VaultValue,
            &tagged(T_STATE, &tag),
            value,
        );
        self.conn.execute(
            "INSERT INTO app_state(tag, value) VALUES (?1, ?2)
             ON CONFLICT(tag) DO UPDATE SET value = excluded.value",
            params![&tag[..], sealed],
        )?;
        Ok(())
    }

    /// The app's state value `name`, if stored. A value that does not open under this
    /// name is reported as tampered.
    pub fn get_state(&mut self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_state.mac(name.as_bytes());
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM app_state WHERE tag = ?1",
                [&tag[..]],
                |r| r.get(0),
            )
            .optional()?;
        blob.map(|b| {
            open_bytes(
                &st.keys.vault,
                ObjectKind::VaultValue,
                &tagged(T_STATE, &tag),
                &b,
            )
            .map_err(|_| tampered("app state", &tag))
        })
        .transpose()
    }

    /// Deletes the app's state value `name` (no error if absent).
    pub fn delete_state(&mut self, name: &str) -> Result<()> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_state.mac(name.as_bytes());
        self.conn
            .execute("DELETE FROM app_state WHERE tag = ?1", [&tag[..]])?;
        Ok(())
    }
}
