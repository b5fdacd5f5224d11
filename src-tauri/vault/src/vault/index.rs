//! Search: the in-memory index over decrypted summaries and the blind-index lookups
//! (docs/vault.md "Search").

use carekey_core::envelope::ObjectKind;
use carekey_core::keys::ContentKey;
use rusqlite::Connection;

use super::records::{decode_summary, read_summary};
use super::{T_REC_KEY, Vault, open_bytes, tagged};
use crate::crypto::VaultKeys;
use crate::error::{Result, VaultError};
use crate::fhir;
use crate::types::*;

pub(super) struct IndexEntry {
    summary: RecordSummary,
    hay: String,
}

impl IndexEntry {
    /// The entry of one summary: the summary and its search text.
    fn of(summary: RecordSummary) -> Self {
        let hay = fhir::haystack(&fhir::Extracted {
            fhir_type: summary.fhir_type.clone(),
            fhir_id: String::new(),
            category: summary.category,
            title: summary.title.clone(),
            date: None,
            key_values: summary.key_values.clone(),
            codes: summary.codes.clone(),
            author: summary.author.clone(),
        });
        Self { summary, hay }
    }
}

/// The index after a write that deleted the records `removed` and then inserted `added` (in
/// insertion order), without decrypting every summary again: what [`build_index`] gives for
/// the same rows. Both list rows in insertion (rowid) order, stably sorted newest first; an
/// inserted row gets a higher rowid than every row kept (a replaced record is deleted and
/// inserted again), so appending `added` to the kept entries, in their order, then sorting
/// stably gives the same order. Rows found damaged stay listed unless removed.
pub(super) fn updated_index(
    (old, damaged): (Vec<IndexEntry>, Vec<RecordId>),
    removed: &std::collections::HashSet<RecordId>,
    added: Vec<RecordSummary>,
) -> (Vec<IndexEntry>, Vec<RecordId>) {
    let mut out: Vec<IndexEntry> = old
        .into_iter()
        .filter(|e| !removed.contains(&e.summary.id))
        .collect();
    out.extend(added.into_iter().map(IndexEntry::of));
    out.sort_by(|a, b| b.summary.date.cmp(&a.summary.date));
    let damaged = damaged
        .into_iter()
        .filter(|id| !removed.contains(id))
        .collect();
    (out, damaged)
}

impl Drop for IndexEntry {
    /// The search text holds every searchable word of the record: wipe it when the index is
    /// dropped (lock, idle eviction, writes).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.hay);
        zeroize::Zeroize::zeroize(&mut self.summary.title);
    }
}

impl Vault {
    fn ensure_index(&mut self) -> Result<&(Vec<IndexEntry>, Vec<RecordId>)> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        if st.index.is_none() {
            st.index = Some(build_index(&self.conn, &st.keys)?);
        }
        st.index.as_ref().ok_or(VaultError::Locked)
    }

    /// Every record's summary (newest first) and the ids of damaged rows.
    pub fn list(&mut self) -> Result<Listing> {
        let (idx, damaged) = self.ensure_index()?;
        Ok(Listing {
            records: idx.iter().map(|e| e.summary.clone()).collect(),
            damaged: damaged.clone(),
        })
    }

    /// Every record's summary, in [`Vault::list`]'s order, borrowed from the in-memory index:
    /// for callers that only read them (the timeline builds its rows from these), without the
    /// copy of every summary, with its codes and values, that `list` makes.
    pub fn summaries(&mut self) -> Result<impl ExactSizeIterator<Item = &RecordSummary>> {
        let (idx, _) = self.ensure_index()?;
        Ok(idx.iter().map(|e| &e.summary))
    }

    /// Full-text search over titles, codes, displays, values and authors: every
    /// whitespace-separated term must occur (case-insensitive). Runs in memory over the
    /// decrypted summaries (built once after unlock, dropped on lock).
    pub fn search(&mut self, query: &str, limit: usize) -> Result<Vec<RecordSummary>> {
        let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let (idx, _) = self.ensure_index()?;
        Ok(idx
            .iter()
            .filter(|e| terms.iter().all(|t| e.hay.contains(t.as_str())))
            .take(limit)
            .map(|e| e.summary.clone())
            .collect())
    }

    /// Records of one FHIR resource type, through the blind index.
    pub fn find_by_type(&mut self, fhir_type: &str) -> Result<Vec<RecordSummary>> {
        self.find_term(&format!("type:{fhir_type}"))
    }

    /// Records carrying a code, through the blind index.
    pub fn find_by_code(&mut self, system: &str, code: &str) -> Result<Vec<RecordSummary>> {
        self.find_term(&format!("code:{system}|{code}"))
    }

    fn find_term(&mut self, term: &str) -> Result<Vec<RecordSummary>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let t = st.keys.bi_terms.mac(term.as_bytes());
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM terms WHERE term = ?1")?;
        let ids: Vec<Vec<u8>> = stmt
            .query_map([&t[..]], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let rid = RecordId(id.try_into().map_err(|_| VaultError::BadHeader("terms"))?);
            out.push(read_summary(&self.conn, &st.keys, &rid)?);
        }
        Ok(out)
    }
}

pub(super) fn build_index(
    conn: &Connection,
    keys: &VaultKeys,
) -> Result<(Vec<IndexEntry>, Vec<RecordId>)> {
    build_index_without(conn, keys, &std::collections::HashSet::new())
}

/// [`build_index`] leaving out the rows `skip` (not decrypted): the rows a write just made,
/// whose summaries the writer holds ([`updated_index`]).
pub(super) fn build_index_without(
    conn: &Connection,
    keys: &VaultKeys,
    skip: &std::collections::HashSet<RecordId>,
) -> Result<(Vec<IndexEntry>, Vec<RecordId>)> {
    let mut stmt = conn.prepare("SELECT id, key, summary FROM records")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    while let Some(row) = rows.next()? {
        let id: Vec<u8> = row.get(0)?;
        let Ok(id) = <[u8; 32]>::try_from(id) else {
            continue;
        };
        let rid = RecordId(id);
        if skip.contains(&rid) {
            continue;
        }
        let k: Vec<u8> = row.get(1)?;
        let s: Vec<u8> = row.get(2)?;
        let summary = open_bytes(
            &keys.wrap,
            ObjectKind::VaultKeyWrap,
            &tagged(T_REC_KEY, &id),
            &k,
        )
        .ok()
        .and_then(|kb| <[u8; 32]>::try_from(kb.as_slice()).ok())
        .map(ContentKey::from_bytes)
        .and_then(|ck| decode_summary(&ck, &rid, &s).ok());
        match summary {
            Some(summary) => out.push(IndexEntry::of(summary)),
            None => damaged.push(rid),
        }
    }
    out.sort_by(|a, b| b.summary.date.cmp(&a.summary.date));
    Ok((out, damaged))
}
