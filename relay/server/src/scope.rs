//! The scope format (relay-formats.md "Scope"): the categories and record ids a read token
//! covers. Parsed when a root token is registered and compared link by link in a delegation
//! chain (a delegate's scope must be within its parent's).

use crate::encoding::Reader;
use crate::error::{RelayError, Result};

/// A parsed scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Category bit set.
    pub categories: u32,
    /// Record ids, strictly ascending.
    pub records: Vec<[u8; 16]>,
}

impl Scope {
    /// Parses an encoded scope exactly (no trailing bytes; ids sorted, no duplicates).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new("scope", bytes);
        let s = Self::read(&mut r)?;
        r.finish()?;
        Ok(s)
    }

    /// Reads a scope from `r` (inside a delegation link).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let categories = r.u32()?;
        let n = r.u16()?;
        let mut records: Vec<[u8; 16]> = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let id = r.array::<16>()?;
            if records.last().is_some_and(|p| *p >= id) {
                return Err(RelayError::bad(
                    "bad_scope",
                    "scope record ids must be sorted ascending without duplicates",
                ));
            }
            records.push(id);
        }
        Ok(Self {
            categories,
            records,
        })
    }

    /// True if `self` is within `parent`.
    pub fn within(&self, parent: &Scope) -> bool {
        self.categories & !parent.categories == 0
            && self
                .records
                .iter()
                .all(|r| parent.records.binary_search(r).is_ok())
    }
}
