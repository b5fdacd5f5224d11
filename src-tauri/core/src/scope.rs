//! Scopes: what a grant covers, whole record categories plus single records
//! (docs/protocol.md "Grants, scope, delegation"; bit layout in docs/relay-formats.md "Scope").
//! A module of its own so the manifest and its sections name scopes without grants.

use crate::error::{Error, Result};
use crate::wire::{Reader, Wire, Writer};

/// Most record ids a scope may list.
pub const MAX_SCOPE_RECORDS: usize = 4096;
/// Record categories a scope can name (bit positions of docs/relay-formats.md "Scope").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum Category {
    Allergies = 0,
    Conditions = 1,
    Medications = 2,
    Immunizations = 3,
    Procedures = 4,
    Observations = 5,
    Documents = 6,
    Encounters = 7,
    Notes = 8,
    Other = 9,
    Demographics = 10,
}

impl Category {
    /// All categories.
    pub const ALL: [Category; 11] = [
        Category::Allergies,
        Category::Conditions,
        Category::Medications,
        Category::Immunizations,
        Category::Procedures,
        Category::Observations,
        Category::Documents,
        Category::Encounters,
        Category::Notes,
        Category::Other,
        Category::Demographics,
    ];
    /// The scope bit.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
    /// From a bit position.
    pub fn from_index(i: u8) -> Option<Self> {
        Self::ALL.get(usize::from(i)).copied()
    }
}

const KNOWN_CATEGORY_BITS: u32 = (1 << 11) - 1;

/// What a grant covers: whole categories plus single records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    categories: u32,
    records: Vec<[u8; 16]>,
}

impl Scope {
    /// Every category.
    pub fn all() -> Self {
        Self {
            categories: KNOWN_CATEGORY_BITS,
            records: Vec::new(),
        }
    }
    /// A scope of categories and records (ids are sorted and de-duplicated).
    pub fn new(categories: &[Category], mut records: Vec<[u8; 16]>) -> Result<Self> {
        records.sort_unstable();
        records.dedup();
        if records.len() > MAX_SCOPE_RECORDS {
            return Err(Error::Malformed {
                what: "scope",
                reason: "too many records",
            });
        }
        Ok(Self {
            categories: categories.iter().fold(0, |a, c| a | c.bit()),
            records,
        })
    }
    /// Does the scope cover this record?
    pub fn covers(&self, category: Category, record_id: &[u8; 16]) -> bool {
        self.categories & category.bit() != 0 || self.records.binary_search(record_id).is_ok()
    }
    /// Category bits.
    pub fn categories(&self) -> u32 {
        self.categories
    }
    /// Listed record ids.
    pub fn records(&self) -> &[[u8; 16]] {
        &self.records
    }
    /// `self ⊆ parent` in the sense of docs/relay-formats.md "Scope".
    pub fn is_within(&self, parent: &Scope) -> bool {
        self.categories & !parent.categories == 0
            && self
                .records
                .iter()
                .all(|r| parent.records.binary_search(r).is_ok())
    }
}

impl Wire for Scope {
    const WHAT: &'static str = "scope";
    fn encode(&self, w: &mut Writer) {
        w.u32(self.categories);
        w.u16(u16::try_from(self.records.len()).unwrap_or(u16::MAX));
        for r in self.records.iter().take(usize::from(u16::MAX)) {
            w.raw(r);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let categories = r.u32()?;
        if categories & !KNOWN_CATEGORY_BITS != 0 {
            return Err(r.malformed("unknown category bits"));
        }
        let n = usize::from(r.u16()?);
        if n > MAX_SCOPE_RECORDS {
            return Err(r.malformed("too many records"));
        }
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let id: [u8; 16] = r.array()?;
            if records.last().is_some_and(|p| *p >= id) {
                return Err(r.malformed("record ids not sorted and unique"));
            }
            records.push(id);
        }
        Ok(Self {
            categories,
            records,
        })
    }
}
