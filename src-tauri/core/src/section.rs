//! Scoped keys and the sectioned manifest (docs/protocol.md "Scoped keys and the sectioned
//! manifest").
//!
//! A grantee must decrypt only what its scope covers, in every epoch, after every re-key. A
//! scope's *elements* are its categories and its listed records. Per epoch, each element has a
//! [`SectionSecret`] derived from the epoch key with HKDF under [`label::KDF_SCOPE_ELEMENT`]; it
//! opens that element's *section* of the manifest (the entries — blob id, hash, content key —
//! of the records the element covers) and nothing else. Grantees receive the secrets of their
//! own elements ([`ScopeKeys`]), never the epoch key; a delegating doctor hands down a subset
//! of its own (it cannot derive anything else: HKDF is one-way), and re-keys reach everyone the
//! same way, element by element.
//!
//! The relay enforces the same boundary on fetches: every element also has an opaque 16-byte
//! *group tag*, derived from a per-share [`GroupSecret`] only the patient holds and stable
//! across epochs. The patient registers, per epoch, which blobs belong to which group, and
//! every read token with the groups of its scope; a blob is served to a token only if they
//! share a group, and a delegated token's groups must be a subset of its parent's.
//!
//! The sealed manifest is a list of sections under opaque locators (derived from each
//! element's secret, so they differ in every epoch and name nothing): a grantee finds its own
//! sections by locator, and the relay or another grantee learns only how many there are and
//! how large.

use rand_core::{CryptoRng, RngCore};

use crate::envelope::{self, Context, Envelope, ObjectKind};
use crate::error::{Error, Result};
use crate::keys::{
    EpochKey, GroupSecret, PublicKey, SectionSecret, SigningSecret, SymmetricKey, hkdf32,
};
use crate::label;
use crate::manifest::{MIN_ENTRY_LEN, Manifest, ManifestEntry};
use crate::scope::{Category, MAX_SCOPE_RECORDS, Scope};
use crate::wire::{Reader, Wire, Writer};

/// Version of the sectioned manifest and of its section bodies (version 1 is the single
/// envelope of [`Manifest::seal`]).
pub const SECTIONS_VERSION: u8 = 2;
/// Most elements a scope (and so a key set or a manifest) can have: every category plus the
/// most records a scope may list.
pub const MAX_ELEMENTS: usize = Category::ALL.len() + MAX_SCOPE_RECORDS;
/// Bytes of a relay group tag.
pub const GROUP_LEN: usize = 16;

/// The relay's opaque name of one scope element of one share.
pub type GroupTag = [u8; GROUP_LEN];

/// One element of a scope: a whole category or one listed record. Ordered categories first
/// (by bit), then records (by id): the canonical order of every list of elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeElement {
    /// Every record of a category.
    Category(Category),
    /// One record, by its stable record id.
    Record([u8; 16]),
}

impl Wire for ScopeElement {
    const WHAT: &'static str = "scope element";
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::Category(c) => {
                w.u8(1);
                w.u8(*c as u8);
            }
            Self::Record(id) => {
                w.u8(2);
                w.raw(id);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8()? {
            1 => Category::from_index(r.u8()?)
                .map(Self::Category)
                .ok_or_else(|| r.malformed("unknown category")),
            2 => Ok(Self::Record(r.array()?)),
            _ => Err(r.malformed("unknown scope element kind")),
        }
    }
}

impl ScopeElement {
    /// Does this element cover the manifest entry?
    pub fn covers(&self, e: &ManifestEntry) -> bool {
        match self {
            Self::Category(c) => e.category == *c,
            Self::Record(id) => e.record_id == *id,
        }
    }
}

impl Scope {
    /// The scope's elements in canonical order (categories by bit, then the listed records).
    pub fn elements(&self) -> Vec<ScopeElement> {
        Category::ALL
            .iter()
            .filter(|c| self.categories() & c.bit() != 0)
            .map(|c| ScopeElement::Category(*c))
            .chain(self.records().iter().map(|r| ScopeElement::Record(*r)))
            .collect()
    }
}

/// The secret of `element` in epoch `epoch` of `share_id`:
/// `HKDF(salt share_id, ikm epoch key, info KDF_SCOPE_ELEMENT || 0x00 || epoch u32 || element)`.
pub fn element_secret(
    epoch_key: &EpochKey,
    share_id: &[u8; 16],
    epoch: u32,
    element: &ScopeElement,
) -> SectionSecret {
    SectionSecret::from_bytes(hkdf32(
        Some(share_id),
        epoch_key.expose_secret(),
        &[
            label::KDF_SCOPE_ELEMENT.as_bytes(),
            &[0],
            &epoch.to_be_bytes(),
            &element.to_bytes(),
        ],
    ))
}

/// The AEAD key of an element's manifest section: `HKDF(ikm secret, info KDF_SECTION_KEY)`.
pub fn section_key(s: &SectionSecret) -> SymmetricKey {
    SymmetricKey::from_bytes(hkdf32(
        None,
        s.expose_secret(),
        &[label::KDF_SECTION_KEY.as_bytes()],
    ))
}

/// The opaque locator of an element's section in the sealed manifest: the first 16 bytes of
/// `HKDF(ikm secret, info KDF_SECTION_LOCATOR)`.
pub fn locator(s: &SectionSecret) -> [u8; 16] {
    let full = hkdf32(
        None,
        s.expose_secret(),
        &[label::KDF_SECTION_LOCATOR.as_bytes()],
    );
    let mut l = [0u8; 16];
    l.copy_from_slice(&full[..16]);
    l
}

impl GroupSecret {
    /// The relay group tag of `element` in `share_id`:
    /// the first 16 bytes of `HKDF(salt share_id, ikm group secret, info KDF_RELAY_GROUP ||
    /// 0x00 || element)`. The same in every epoch.
    pub fn tag(&self, share_id: &[u8; 16], element: &ScopeElement) -> GroupTag {
        let full = hkdf32(
            Some(share_id),
            self.expose_secret(),
            &[label::KDF_RELAY_GROUP.as_bytes(), &[0], &element.to_bytes()],
        );
        let mut t = [0u8; GROUP_LEN];
        t.copy_from_slice(&full[..GROUP_LEN]);
        t
    }

    /// The sorted, de-duplicated group tags of `scope`'s elements.
    pub fn tags(&self, share_id: &[u8; 16], scope: &Scope) -> Vec<GroupTag> {
        let mut v: Vec<GroupTag> = scope
            .elements()
            .iter()
            .map(|e| self.tag(share_id, e))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// What a grantee holds for one element: its secret in the current epoch and its relay group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedKey {
    /// The element.
    pub element: ScopeElement,
    /// The element's secret in the epoch (opens its manifest section).
    pub secret: SectionSecret,
    /// The element's relay group tag (names it in token and delegation registrations).
    pub group: GroupTag,
}

/// The keys of one scope in one epoch: one [`ScopedKey`] per element, in canonical order.
/// Wire: `u16 n || n × (element || secret [32] || group [16])`, elements strictly ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeKeys {
    keys: Vec<ScopedKey>,
}

impl ScopeKeys {
    /// The patient's derivation of `scope`'s keys for `epoch`.
    pub fn derive(
        share_id: &[u8; 16],
        epoch: u32,
        epoch_key: &EpochKey,
        groups: &GroupSecret,
        scope: &Scope,
    ) -> Self {
        Self {
            keys: scope
                .elements()
                .into_iter()
                .map(|element| ScopedKey {
                    secret: element_secret(epoch_key, share_id, epoch, &element),
                    group: groups.tag(share_id, &element),
                    element,
                })
                .collect(),
        }
    }

    /// The keys, in canonical element order.
    pub fn keys(&self) -> &[ScopedKey] {
        &self.keys
    }

    /// The elements the keys are for.
    pub fn elements(&self) -> Vec<ScopeElement> {
        self.keys.iter().map(|k| k.element).collect()
    }

    /// Whether the keys are exactly those of `scope`'s elements (no more, no fewer).
    pub fn covers_exactly(&self, scope: &Scope) -> bool {
        self.elements() == scope.elements()
    }

    /// The keys of `scope`'s elements, which must all be held: what a delegating doctor
    /// hands down (it can hand down nothing it does not hold).
    pub fn subset(&self, scope: &Scope) -> Result<Self> {
        let mut keys = Vec::new();
        for e in scope.elements() {
            let k = self
                .keys
                .binary_search_by(|k| k.element.cmp(&e))
                .map_err(|_| Error::Malformed {
                    what: "scope keys",
                    reason: "the scope is wider than the keys held",
                })?;
            keys.push(self.keys[k].clone());
        }
        Ok(Self { keys })
    }

    /// The sorted, de-duplicated relay group tags of the keys.
    pub fn groups(&self) -> Vec<GroupTag> {
        let mut v: Vec<GroupTag> = self.keys.iter().map(|k| k.group).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether `other` names the same elements with the same groups (a re-key changes the
    /// secrets only).
    pub fn same_elements_and_groups(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.element == b.element && a.group == b.group)
    }
}

impl Wire for ScopeKeys {
    const WHAT: &'static str = "scope keys";
    fn encode(&self, w: &mut Writer) {
        w.u16(u16::try_from(self.keys.len()).unwrap_or(u16::MAX));
        for k in self.keys.iter().take(usize::from(u16::MAX)) {
            w.obj(&k.element);
            w.obj(&k.secret);
            w.raw(&k.group);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let n = usize::from(r.u16()?);
        // Smallest key: category element (2) + secret (32) + group (16).
        if n > MAX_ELEMENTS || n > r.remaining() / 50 {
            return Err(r.malformed("too many scope keys"));
        }
        let mut keys: Vec<ScopedKey> = Vec::with_capacity(n);
        for _ in 0..n {
            let k = ScopedKey {
                element: r.obj()?,
                secret: r.obj()?,
                group: r.array()?,
            };
            if keys.last().is_some_and(|p| p.element >= k.element) {
                return Err(r.malformed("scope key elements not sorted and unique"));
            }
            keys.push(k);
        }
        Ok(Self { keys })
    }
}

/// The keys a grant, epoch update or delegated access carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantKeys {
    /// Version 1 (shares made before scoped keys): the whole epoch key, which opens the whole
    /// manifest. Still read, so old state and old shares keep working.
    Epoch(EpochKey),
    /// Version 2: the keys of the grantee's scope elements only.
    Scoped(ScopeKeys),
}

impl GrantKeys {
    /// The scoped keys, if these are.
    pub fn scoped(&self) -> Option<&ScopeKeys> {
        match self {
            Self::Scoped(k) => Some(k),
            Self::Epoch(_) => None,
        }
    }

    /// The relay groups of scoped keys (`None` for a version-1 epoch key).
    pub fn groups(&self) -> Option<Vec<GroupTag>> {
        self.scoped().map(ScopeKeys::groups)
    }

    /// Opens the share's sealed manifest object with these keys: a version-1 envelope with
    /// the epoch key, or the grantee's sections of a version-2 sectioned manifest (only the
    /// entries of its scope come back).
    pub fn open_manifest(
        &self,
        sealed: &[u8],
        share_id: &[u8; 16],
        epoch: u32,
        patient: &PublicKey,
    ) -> Result<Manifest> {
        match self {
            Self::Epoch(k) => Manifest::open(sealed, share_id, epoch, k, patient),
            Self::Scoped(k) => open_sections(sealed, share_id, epoch, k, patient),
        }
    }
}

/// The relay object of a version-2 manifest: `0x02 || u32 n || n × (locator [16] ||
/// bytes32(sealed section))`, locators strictly ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSections {
    /// (locator, sealed section envelope), by locator.
    pub sections: Vec<([u8; 16], Vec<u8>)>,
}

impl Wire for SealedSections {
    const WHAT: &'static str = "sectioned manifest";
    fn encode(&self, w: &mut Writer) {
        w.u8(SECTIONS_VERSION);
        w.u32(u32::try_from(self.sections.len()).unwrap_or(u32::MAX));
        for (l, s) in &self.sections {
            w.raw(l);
            w.bytes32(s);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            sections: read_sections(r)?
                .into_iter()
                .map(|(l, s)| (l, s.to_vec()))
                .collect(),
        })
    }
}

/// The sections of a sealed sectioned manifest, borrowed from the input: the grantee opens a
/// few of them, so the others (most of the bytes, for a narrow scope) are never copied.
type SectionsView<'a> = Vec<([u8; 16], &'a [u8])>;

/// Reads the body of [`SealedSections`] without copying the sections.
fn read_sections<'a>(r: &mut Reader<'a>) -> Result<SectionsView<'a>> {
    r.version(SECTIONS_VERSION)?;
    let n = r.u32()? as usize;
    if n > MAX_ELEMENTS || n > r.remaining() / 20 {
        return Err(r.malformed("section count exceeds the input"));
    }
    let mut sections: SectionsView<'a> = Vec::with_capacity(n);
    for _ in 0..n {
        let l: [u8; 16] = r.array()?;
        if sections.last().is_some_and(|(p, _)| *p >= l) {
            return Err(r.malformed("section locators not sorted and unique"));
        }
        sections.push((l, r.bytes32()?));
    }
    Ok(sections)
}

/// Whether a sealed manifest object is sectioned (version 2) rather than one envelope.
pub fn is_sectioned(sealed: &[u8]) -> bool {
    sealed.first() == Some(&SECTIONS_VERSION)
}

/// The object id a section's AEAD context binds: `share id || locator`.
pub fn section_id(share_id: &[u8; 16], locator: &[u8; 16]) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(share_id);
    id[16..].copy_from_slice(locator);
    id
}

/// Signs, seals and collects the sections of `m`: one per category (empty ones too, so a
/// grantee can tell "no records" from "section withheld") and one per record of `records`
/// (the records some grant lists). Section body (signed under [`label::SECTION_SIG`]):
/// `0x02 || share id || version u64 || epoch u32 || issued_at u64 || element || u32 n ||
/// n × (index u32 || entry)`, where `index` is the entry's position in `m`; sealed as
/// `Envelope(section key, AAD(kind 11, share id || locator, epoch), bytes32(body) || sig)`.
pub fn seal_sections<R: RngCore + CryptoRng>(
    m: &Manifest,
    patient: &SigningSecret,
    epoch_key: &EpochKey,
    records: &[[u8; 16]],
    rng: &mut R,
) -> Vec<u8> {
    let mut elements: Vec<ScopeElement> = Category::ALL
        .iter()
        .map(|c| ScopeElement::Category(*c))
        .collect();
    let mut records = records.to_vec();
    records.sort_unstable();
    records.dedup();
    elements.extend(records.into_iter().map(ScopeElement::Record));
    let mut sections = Vec::with_capacity(elements.len());
    for element in elements {
        let secret = element_secret(epoch_key, &m.share_id, m.epoch, &element);
        let mut w = Writer::new();
        w.u8(SECTIONS_VERSION);
        w.raw(&m.share_id);
        w.u64(m.version);
        w.u32(m.epoch);
        w.u64(m.issued_at);
        w.obj(&element);
        let covered: Vec<(usize, &ManifestEntry)> = m
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| element.covers(e))
            .collect();
        w.u32(u32::try_from(covered.len()).unwrap_or(u32::MAX));
        for (i, e) in covered {
            w.u32(u32::try_from(i).unwrap_or(u32::MAX));
            w.obj(e);
        }
        let body = w.into_bytes();
        let sig = patient.sign(label::SECTION_SIG, &body);
        let mut pt = Writer::new();
        pt.bytes32(&body);
        pt.raw(&sig);
        let l = locator(&secret);
        let id = section_id(&m.share_id, &l);
        let ctx = Context::new(ObjectKind::ManifestSection, &id, m.epoch);
        let sealed = envelope::seal(&section_key(&secret), &ctx, pt.as_slice(), rng).to_bytes();
        sections.push((l, sealed));
    }
    sections.sort_by_key(|s| s.0);
    SealedSections { sections }.to_bytes()
}

fn malformed(reason: &'static str) -> Error {
    Error::Malformed {
        what: "sectioned manifest",
        reason,
    }
}

/// Opens the sections of `keys` in a sectioned manifest and returns the manifest they make:
/// exactly the entries of the grantee's scope, in the patient's order. Every section must be
/// there (a withheld section is an error, not an empty scope), signed by the patient, for
/// this share, epoch and element, list only entries its element covers, and every section must
/// carry the same manifest version (no mixing of versions).
pub fn open_sections(
    sealed: &[u8],
    share_id: &[u8; 16],
    epoch: u32,
    keys: &ScopeKeys,
    patient: &PublicKey,
) -> Result<Manifest> {
    let mut r = Reader::new(sealed, SealedSections::WHAT);
    let all = read_sections(&mut r)?;
    r.finish()?;
    let mut header: Option<(u64, u64)> = None;
    // (index in the patient's manifest, entry) of every section, sorted and checked below.
    let mut entries: Vec<(u32, ManifestEntry)> = Vec::new();
    for k in keys.keys() {
        let l = locator(&k.secret);
        let at = all
            .binary_search_by(|(x, _)| x.cmp(&l))
            .map_err(|_| malformed("a section of the grantee's scope is missing"))?;
        let id = section_id(share_id, &l);
        let ctx = Context::new(ObjectKind::ManifestSection, &id, epoch);
        let pt = envelope::open(
            &section_key(&k.secret),
            &ctx,
            &Envelope::from_bytes(all[at].1)?,
        )?;
        let mut r = Reader::new(&pt, "manifest section");
        let body = r.bytes32()?;
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        patient.verify(label::SECTION_SIG, body, &sig, "manifest section")?;
        let mut r = Reader::new(body, "manifest section");
        r.version(SECTIONS_VERSION)?;
        let sid: [u8; 16] = r.array()?;
        let version = r.u64()?;
        let e = r.u32()?;
        let issued_at = r.u64()?;
        let element: ScopeElement = r.obj()?;
        if sid != *share_id || e != epoch || element != k.element {
            return Err(malformed(
                "section signed for another share, epoch or element",
            ));
        }
        match header {
            None => header = Some((version, issued_at)),
            Some(h) if h == (version, issued_at) => {}
            Some(_) => return Err(malformed("sections of different manifest versions")),
        }
        let n = r.u32()? as usize;
        if n > r.remaining() / (4 + MIN_ENTRY_LEN) {
            return Err(r.malformed("entry count exceeds the input"));
        }
        let mut last: Option<u32> = None;
        for _ in 0..n {
            let index = r.u32()?;
            if last.is_some_and(|p| p >= index) {
                return Err(r.malformed("entry indices not ascending"));
            }
            last = Some(index);
            let entry: ManifestEntry = r.obj()?;
            if !element.covers(&entry) {
                return Err(malformed("a section lists an entry outside its element"));
            }
            entries.push((index, entry));
        }
        r.finish()?;
    }
    // A record may be in two sections (its category's and its own); each section's indices
    // ascend, so one stable sort brings the copies of an entry together, and they must agree.
    entries.sort_by_key(|(i, _)| *i);
    let mut merged: Vec<ManifestEntry> = Vec::with_capacity(entries.len());
    let mut last: Option<u32> = None;
    for (index, entry) in entries {
        if last == Some(index) {
            if merged.last() != Some(&entry) {
                return Err(malformed("two sections disagree on an entry"));
            }
            continue;
        }
        last = Some(index);
        merged.push(entry);
    }
    let (version, issued_at) = header.unwrap_or((0, 0));
    Ok(Manifest {
        share_id: *share_id,
        version,
        epoch,
        issued_at,
        entries: merged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ContentKey;
    use crate::manifest::BlobFormat;
    use rand_core::OsRng;

    fn entry(i: u8, category: Category) -> ManifestEntry {
        ManifestEntry {
            blob_id: [i; 16],
            record_id: [i ^ 0x80; 16],
            format: BlobFormat::Envelope,
            hash: [i; 32],
            content_key: ContentKey::random(&mut OsRng),
            size: 100 + u64::from(i),
            category,
            title: format!("entry {i}"),
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            share_id: [7; 16],
            version: 3,
            epoch: 2,
            issued_at: 1000,
            entries: vec![
                entry(1, Category::Observations),
                entry(2, Category::Documents),
                entry(3, Category::Observations),
                entry(4, Category::Conditions),
            ],
        }
    }

    /// The patient's keys and [`manifest`] sealed with record 4 (a condition) listed by some
    /// grant, so it has a section of its own besides its category's: (patient, epoch key,
    /// group secret, manifest, listed records, sealed manifest).
    type Sealed = (
        SigningSecret,
        EpochKey,
        GroupSecret,
        Manifest,
        [[u8; 16]; 1],
        Vec<u8>,
    );

    fn sealed_with_record_4() -> Sealed {
        let patient = SigningSecret::random(&mut OsRng);
        let ek = EpochKey::random(&mut OsRng);
        let m = manifest();
        let listed = [[4 ^ 0x80; 16]];
        let sealed = seal_sections(&m, &patient, &ek, &listed, &mut OsRng);
        let groups = GroupSecret::random(&mut OsRng);
        (patient, ek, groups, m, listed, sealed)
    }

    #[test]
    fn a_grantee_opens_exactly_its_scope() {
        let (patient, ek, groups, m, listed, sealed) = sealed_with_record_4();
        assert!(is_sectioned(&sealed));
        let scope = Scope::new(&[Category::Observations], listed.to_vec()).expect("scope");
        let keys = ScopeKeys::derive(&m.share_id, m.epoch, &ek, &groups, &scope);
        assert!(keys.covers_exactly(&scope));
        let got =
            open_sections(&sealed, &m.share_id, m.epoch, &keys, &patient.public()).expect("opens");
        let blobs: Vec<[u8; 16]> = got.entries.iter().map(|e| e.blob_id).collect();
        assert_eq!(blobs, vec![[1; 16], [3; 16], [4; 16]]);
        assert_eq!((got.version, got.epoch), (3, 2));
        // The whole scope sees everything, in the patient's order.
        let all = ScopeKeys::derive(&m.share_id, m.epoch, &ek, &groups, &Scope::all());
        let got =
            open_sections(&sealed, &m.share_id, m.epoch, &all, &patient.public()).expect("opens");
        assert_eq!(got.entries, m.entries);
        // A subset hands down only what is held; wider is refused.
        let docs = Scope::new(&[Category::Documents], vec![]).expect("scope");
        assert!(keys.subset(&docs).is_err());
        let sub = all.subset(&docs).expect("held");
        let got =
            open_sections(&sealed, &m.share_id, m.epoch, &sub, &patient.public()).expect("opens");
        assert_eq!(got.entries.len(), 1);
        // Another epoch's keys, or the next epoch's, open nothing.
        let next = ScopeKeys::derive(&m.share_id, m.epoch + 1, &ek, &groups, &scope);
        assert!(open_sections(&sealed, &m.share_id, m.epoch, &next, &patient.public()).is_err());
        // Groups are stable across epochs, secrets are not.
        assert!(keys.same_elements_and_groups(&next));
        assert_ne!(keys, next);
    }

    #[test]
    fn an_entry_in_two_sections_comes_once_and_the_copies_must_agree() {
        let (patient, ek, groups, m, listed, sealed) = sealed_with_record_4();
        let scope = Scope::new(&[Category::Conditions], listed.to_vec()).expect("scope");
        let keys = ScopeKeys::derive(&m.share_id, m.epoch, &ek, &groups, &scope);
        let got =
            open_sections(&sealed, &m.share_id, m.epoch, &keys, &patient.public()).expect("opens");
        assert_eq!(got.entries, vec![m.entries[3].clone()]);
        // The same version signed twice with record 4 told differently: the record's own
        // section from the second, the category's from the first.
        let mut other = m.clone();
        other.entries[3].title = "another title".into();
        let b =
            SealedSections::from_bytes(&seal_sections(&other, &patient, &ek, &listed, &mut OsRng))
                .expect("parses");
        let own = locator(&keys.keys()[1].secret);
        let mut mixed = SealedSections::from_bytes(&sealed).expect("parses");
        for (l, s) in &mut mixed.sections {
            if *l == own {
                *s = b
                    .sections
                    .iter()
                    .find(|(x, _)| x == l)
                    .expect("same")
                    .1
                    .clone();
            }
        }
        assert!(matches!(
            open_sections(
                &mixed.to_bytes(),
                &m.share_id,
                m.epoch,
                &keys,
                &patient.public()
            ),
            Err(Error::Malformed {
                reason: "two sections disagree on an entry",
                ..
            })
        ));
    }

    #[test]
    fn forged_withheld_or_mixed_sections_are_rejected() {
        let patient = SigningSecret::random(&mut OsRng);
        let grantee = SigningSecret::random(&mut OsRng);
        let ek = EpochKey::random(&mut OsRng);
        let groups = GroupSecret::random(&mut OsRng);
        let m = manifest();
        let scope = Scope::new(&[Category::Observations], vec![]).expect("scope");
        let keys = ScopeKeys::derive(&m.share_id, m.epoch, &ek, &groups, &scope);
        // Signed by someone else.
        let forged = seal_sections(&m, &grantee, &ek, &[], &mut OsRng);
        assert!(matches!(
            open_sections(&forged, &m.share_id, m.epoch, &keys, &patient.public()),
            Err(Error::BadSignature { .. })
        ));
        // A section withheld.
        let sealed = seal_sections(&m, &patient, &ek, &[], &mut OsRng);
        let mut all = SealedSections::from_bytes(&sealed).expect("parses");
        let l = locator(&keys.keys()[0].secret);
        all.sections.retain(|(x, _)| *x != l);
        assert!(
            open_sections(
                &all.to_bytes(),
                &m.share_id,
                m.epoch,
                &keys,
                &patient.public()
            )
            .is_err()
        );
        // Two sections of different versions.
        let two = Scope::new(&[Category::Observations, Category::Documents], vec![]).expect("s");
        let keys2 = ScopeKeys::derive(&m.share_id, m.epoch, &ek, &groups, &two);
        let mut newer = m.clone();
        newer.version += 1;
        let a = SealedSections::from_bytes(&sealed).expect("parses");
        let b = SealedSections::from_bytes(&seal_sections(&newer, &patient, &ek, &[], &mut OsRng))
            .expect("parses");
        let ldocs = locator(&keys2.keys()[1].secret);
        let mixed = SealedSections {
            sections: a
                .sections
                .iter()
                .map(|(l, s)| {
                    if *l == ldocs {
                        b.sections
                            .iter()
                            .find(|(x, _)| x == l)
                            .cloned()
                            .expect("same locator")
                    } else {
                        (*l, s.clone())
                    }
                })
                .collect(),
        };
        assert!(
            open_sections(
                &mixed.to_bytes(),
                &m.share_id,
                m.epoch,
                &keys2,
                &patient.public()
            )
            .is_err()
        );
        // Moved to another share id: the AAD no longer matches.
        assert!(open_sections(&sealed, &[8; 16], m.epoch, &keys, &patient.public()).is_err());
        // Canonical wire forms.
        assert_eq!(
            ScopeKeys::from_bytes(&keys2.to_bytes()).expect("decodes"),
            keys2
        );
        let mut unsorted = keys2.to_bytes();
        // Swap the two keys: elements out of order.
        let one = (unsorted.len() - 2) / 2;
        let (a, b) = unsorted[2..].split_at(one);
        let swapped = [b, a].concat();
        unsorted.truncate(2);
        unsorted.extend(swapped);
        assert!(ScopeKeys::from_bytes(&unsorted).is_err());
    }
}
