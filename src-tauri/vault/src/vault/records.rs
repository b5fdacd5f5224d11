//! Records and attachments: sealing one resource into its rows (docs/vault.md "Records and
//! provenance", "Schema"), reading it back, and re-verifying its signature.

use carekey_core::envelope::{
    ChunkHeader, ChunkOpener, ChunkSealer, Context, DEFAULT_CHUNK_SIZE, ObjectKind,
};
use carekey_core::keys::{Card, ContentKey};
use carekey_core::label;
use carekey_core::wire::Wire;
use rand_core::{OsRng, RngCore};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::audit::audit_append;
use super::{
    T_ATT_KEY, T_ATT_META, T_REC_BODY, T_REC_KEY, T_REC_SUMMARY, Vault, hex, open_bytes,
    record_signing_bytes, seal_bytes, tagged, tampered, unhex, verify_record_signature,
};
use crate::crypto::VaultKeys;
use crate::error::{Result, VaultError};
use crate::fhir;
use crate::types::*;

/// Stored provenance (inside the sealed body).
#[derive(Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "snake_case")]
pub(super) enum StoredProv {
    Device { sig: String },
    Card { card: String, sig: String },
    None,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredBody {
    resource: Value,
    prov: StoredProv,
}

#[derive(Serialize, Deserialize)]
pub(super) struct AttachmentMeta {
    record: RecordId,
    slot: u32,
    content_type: Option<String>,
    title: Option<String>,
    size: u64,
    root: String,
}

impl Vault {
    /// Adds (or replaces, same type and id) a record entered on this device, signed by the
    /// device key. A resource without `id` gets a random one.
    pub fn add_record(&mut self, resource: Value) -> Result<RecordId> {
        fhir::check_resource(&resource).map_err(VaultError::InvalidArgument)?;
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        let id = put_record(&tx, &st.keys, resource, Prov::Device)?.0.id;
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::RecordAdded { record: id },
        )?;
        tx.commit()?;
        st.index = None;
        Ok(id)
    }

    /// Accepts a resource signed by `author` (a doctor's note); the signature is verified and
    /// kept as provenance.
    pub fn accept_signed_record(
        &mut self,
        resource: Value,
        author: &Card,
        signature: &[u8; 64],
    ) -> Result<RecordId> {
        fhir::check_resource(&resource).map_err(VaultError::InvalidArgument)?;
        verify_record_signature(&resource, author, signature)?;
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        let id = put_record(
            &tx,
            &st.keys,
            resource,
            Prov::Card(Box::new(author.clone()), *signature),
        )?
        .0
        .id;
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::NoteAccepted {
                record: id,
                author: author.body.name.clone(),
            },
        )?;
        tx.commit()?;
        st.index = None;
        Ok(id)
    }

    /// Reads one record with its resource (attachments inlined again).
    pub fn get_record(&mut self, id: &RecordId) -> Result<Record> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        read_record(&self.conn, &st.keys, id)
    }

    /// Re-verifies a record's signature now.
    pub fn verify_record(&mut self, id: &RecordId) -> Result<SignatureStatus> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (_, status) = read_full(&self.conn, &st.keys, id)?;
        Ok(status)
    }

    /// Deletes a record and its attachments (freed pages are zeroed: secure_delete).
    pub fn delete_record(&mut self, id: &RecordId) -> Result<()> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM records WHERE id = ?1", [&id.0[..]])?;
        if n == 0 {
            return Err(VaultError::NotFound { what: "record" });
        }
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::RecordDeleted { record: *id },
        )?;
        tx.commit()?;
        st.index = None;
        Ok(())
    }

    /// Number of record rows (readable or not).
    pub fn record_count(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The plaintext of an attachment (id from [`AttachmentInfo::id`]).
    pub fn attachment(&mut self, id: &str) -> Result<Zeroizing<Vec<u8>>> {
        let aid = unhex(id).ok_or(VaultError::NotFound { what: "attachment" })?;
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (_, data) = read_attachment(&self.conn, &st.keys, &aid)?;
        Ok(data)
    }
}

/// The record-id prefix of a namespaced import (`Vault::import_bundle_namespaced`):
/// `ns:<32 hex>/` before `Type/id`. A resource type is alphanumeric, so no plain `Type/id` and
/// no `share:<tag>/` id can equal a namespaced one.
pub(super) const IMPORT_NAMESPACE_PREFIX: &str = "ns:";

pub(super) enum Prov {
    Device,
    Card(Box<Card>, [u8; 64]),
    /// Source label, and the import's namespace if it has one.
    Imported(String, Option<[u8; 16]>),
    Shared([u8; 32], ShareSource),
}

/// Stores one resource; returns (id, replaced, attachments).
pub(super) fn put_record(
    tx: &Transaction<'_>,
    keys: &VaultKeys,
    mut resource: Value,
    prov: Prov,
) -> Result<(RecordSummary, bool, usize)> {
    fhir::check_resource(&resource).map_err(VaultError::InvalidArgument)?;
    if resource.get("id").and_then(Value::as_str).is_none() {
        let mut r = [0u8; 16];
        OsRng.fill_bytes(&mut r);
        if let Some(o) = resource.as_object_mut() {
            o.insert("id".into(), Value::String(hex(&r)));
        }
    }
    // Records received through a share are namespaced by the share, so two patients'
    // `Patient/1` never collide in a doctor's vault.
    let namespace = match &prov {
        Prov::Shared(tag, _) => format!("share:{}/", hex(tag)),
        Prov::Imported(_, Some(ns)) => format!("{IMPORT_NAMESPACE_PREFIX}{}/", hex(ns)),
        _ => String::new(),
    };
    let rid = RecordId(
        keys.bi_records.mac(
            format!(
                "{namespace}{}/{}",
                resource["resourceType"].as_str().unwrap_or(""),
                resource["id"].as_str().unwrap_or("")
            )
            .as_bytes(),
        ),
    );
    // Signature over the complete resource, before attachments are taken out.
    let (stored_prov, origin, signature, card_name, source_tag) = match prov {
        Prov::Device => {
            let sig = keys
                .identity
                .signing()
                .sign(label::RECORD_SIG, &record_signing_bytes(&resource));
            (
                StoredProv::Device { sig: hex(&sig) },
                Origin::SelfEntered,
                SignatureStatus::Valid {
                    signer: "this device".into(),
                    card_hash: String::new(),
                },
                None,
                None,
            )
        }
        Prov::Card(card, sig) => (
            StoredProv::Card {
                card: hex(&card.to_bytes()),
                sig: hex(&sig),
            },
            Origin::Received,
            SignatureStatus::Valid {
                signer: card.body.name.clone(),
                card_hash: hex(&card.hash()),
            },
            Some(card.body.name.clone()),
            None,
        ),
        Prov::Imported(source, _) => (
            StoredProv::None,
            Origin::Imported { source },
            SignatureStatus::Unsigned,
            None,
            None,
        ),
        Prov::Shared(tag, s) => (
            StoredProv::None,
            Origin::Shared {
                share_id: hex(&s.share_id),
                label: s.label,
                expires_at: s.expires_at,
            },
            SignatureStatus::Unsigned,
            None,
            Some(tag),
        ),
    };

    let atts = fhir::take_attachments(&mut resource).map_err(VaultError::InvalidArgument)?;
    let replaced = tx
        .prepare_cached("DELETE FROM records WHERE id = ?1")?
        .execute([&rid.0[..]])?
        > 0;

    let ck = ContentKey::random(&mut OsRng);
    let wrapped = seal_bytes(
        &keys.wrap,
        ObjectKind::VaultKeyWrap,
        &tagged(T_REC_KEY, &rid.0),
        ck.expose_secret(),
    );

    // Attachments: own content key each, STREAM chunks.
    let mut infos = Vec::with_capacity(atts.len());
    let mut att_rows = Vec::with_capacity(atts.len());
    for a in &atts {
        let mut aid = [0u8; 16];
        OsRng.fill_bytes(&mut aid);
        let ak = ContentKey::random(&mut OsRng);
        let ctx = Context::new(ObjectKind::VaultAttachment, &aid, 0);
        let mut sealer = ChunkSealer::new(&ak, &ctx, DEFAULT_CHUNK_SIZE, &mut OsRng)?;
        let header = sealer.header().to_bytes();
        let mut chunks = Vec::new();
        let size = DEFAULT_CHUNK_SIZE as usize;
        if a.data.is_empty() {
            chunks.push(sealer.seal_chunk(&[], true)?);
        }
        let mut it = a.data.chunks(size).peekable();
        while let Some(c) = it.next() {
            chunks.push(sealer.seal_chunk(c, it.peek().is_none())?);
        }
        let root = sealer.root();
        let meta = AttachmentMeta {
            record: rid,
            slot: a.slot,
            content_type: a.content_type.clone(),
            title: a.title.clone(),
            size: a.data.len() as u64,
            root: hex(&root),
        };
        let meta_pt = Zeroizing::new(
            serde_json::to_vec(&meta).map_err(|_| VaultError::InvalidArgument("attachment"))?,
        );
        infos.push(AttachmentInfo {
            id: hex(&aid),
            content_type: meta.content_type.clone(),
            title: meta.title.clone(),
            size: meta.size,
        });
        att_rows.push((
            aid,
            seal_bytes(
                &keys.wrap,
                ObjectKind::VaultKeyWrap,
                &tagged(T_ATT_KEY, &aid),
                ak.expose_secret(),
            ),
            seal_bytes(
                &ak,
                ObjectKind::VaultValue,
                &tagged(T_ATT_META, &aid),
                &meta_pt,
            ),
            header,
            chunks,
        ));
    }

    let ext = fhir::extract(&resource);
    let summary = RecordSummary {
        id: rid,
        fhir_type: ext.fhir_type,
        fhir_id: ext.fhir_id,
        category: ext.category,
        title: ext.title,
        date: ext.date,
        key_values: ext.key_values,
        codes: ext.codes,
        author: card_name.or(ext.author),
        origin,
        signature,
        attachments: infos,
    };
    let body = StoredBody {
        resource,
        prov: stored_prov,
    };
    let summary_pt = Zeroizing::new(
        serde_json::to_vec(&summary).map_err(|_| VaultError::InvalidArgument("summary"))?,
    );
    let body_pt = Zeroizing::new(
        serde_json::to_vec(&body).map_err(|_| VaultError::InvalidArgument("resource"))?,
    );
    tx.prepare_cached(
        "INSERT INTO records(id, key, summary, body, source) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        &rid.0[..],
        wrapped,
        seal_bytes(
            &ck,
            ObjectKind::VaultValue,
            &tagged(T_REC_SUMMARY, &rid.0),
            &summary_pt
        ),
        seal_bytes(
            &ck,
            ObjectKind::VaultValue,
            &tagged(T_REC_BODY, &rid.0),
            &body_pt
        ),
        source_tag.as_ref().map(|t| &t[..]),
    ])?;
    {
        let mut ins =
            tx.prepare_cached("INSERT OR IGNORE INTO terms(term, record) VALUES (?1, ?2)")?;
        let mut terms = vec![
            format!("type:{}", summary.fhir_type),
            format!("cat:{}", summary.category.as_str()),
        ];
        terms.extend(
            summary
                .codes
                .iter()
                .map(|c| format!("code:{}|{}", c.system, c.code)),
        );
        for t in terms {
            ins.execute(params![&keys.bi_terms.mac(t.as_bytes())[..], &rid.0[..]])?;
        }
    }
    let n_atts = att_rows.len();
    for (aid, wk, meta, header, chunks) in att_rows {
        tx.prepare_cached(
            "INSERT INTO attachments(id, record, key, meta, header) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![&aid[..], &rid.0[..], wk, meta, header])?;
        let mut ins =
            tx.prepare_cached("INSERT INTO chunks(attachment, idx, data) VALUES (?1, ?2, ?3)")?;
        for (i, c) in chunks.iter().enumerate() {
            ins.execute(params![&aid[..], i as i64, c])?;
        }
    }
    Ok((summary, replaced, n_atts))
}

pub(super) fn record_key(
    conn: &Connection,
    keys: &VaultKeys,
    id: &RecordId,
) -> Result<(ContentKey, Vec<u8>, Vec<u8>)> {
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT key, summary, body FROM records WHERE id = ?1")?
        .query_row([&id.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (k, s, b) = row.ok_or(VaultError::NotFound { what: "record" })?;
    let kb = open_bytes(
        &keys.wrap,
        ObjectKind::VaultKeyWrap,
        &tagged(T_REC_KEY, &id.0),
        &k,
    )
    .map_err(|_| tampered("record", &id.0))?;
    let arr: [u8; 32] = kb
        .as_slice()
        .try_into()
        .map_err(|_| tampered("record", &id.0))?;
    Ok((ContentKey::from_bytes(arr), s, b))
}

pub(super) fn decode_summary(ck: &ContentKey, id: &RecordId, s: &[u8]) -> Result<RecordSummary> {
    let pt = open_bytes(ck, ObjectKind::VaultValue, &tagged(T_REC_SUMMARY, &id.0), s)
        .map_err(|_| tampered("record", &id.0))?;
    let sum: RecordSummary = serde_json::from_slice(&pt).map_err(|_| tampered("record", &id.0))?;
    if sum.id != *id {
        return Err(tampered("record", &id.0));
    }
    Ok(sum)
}

pub(super) fn read_summary(
    conn: &Connection,
    keys: &VaultKeys,
    id: &RecordId,
) -> Result<RecordSummary> {
    let (ck, s, _) = record_key(conn, keys, id)?;
    decode_summary(&ck, id, &s)
}

pub(super) fn read_attachment(
    conn: &Connection,
    keys: &VaultKeys,
    aid: &[u8],
) -> Result<(AttachmentMeta, Zeroizing<Vec<u8>>)> {
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT key, meta, header FROM attachments WHERE id = ?1")?
        .query_row([aid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (k, m, h) = row.ok_or(VaultError::NotFound { what: "attachment" })?;
    let bad = || tampered("attachment", aid);
    let kb = open_bytes(
        &keys.wrap,
        ObjectKind::VaultKeyWrap,
        &tagged(T_ATT_KEY, aid),
        &k,
    )
    .map_err(|_| bad())?;
    let ak = ContentKey::from_bytes(kb.as_slice().try_into().map_err(|_| bad())?);
    let mp =
        open_bytes(&ak, ObjectKind::VaultValue, &tagged(T_ATT_META, aid), &m).map_err(|_| bad())?;
    let meta: AttachmentMeta = serde_json::from_slice(&mp).map_err(|_| bad())?;
    let header = ChunkHeader::from_bytes(&h).map_err(|_| bad())?;
    let ctx = Context::new(ObjectKind::VaultAttachment, aid, 0);
    let mut opener = ChunkOpener::new(&ak, &ctx, header);
    let chunks: Vec<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM chunks WHERE attachment = ?1 ORDER BY idx")?
        .query_map([aid], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0)));
    let n = chunks.len();
    for (i, c) in chunks.iter().enumerate() {
        out.extend_from_slice(&opener.open_chunk(c, i + 1 == n).map_err(|_| bad())?);
    }
    let root = opener.finish().map_err(|_| bad())?;
    if hex(&root) != meta.root || out.len() as u64 != meta.size {
        return Err(bad());
    }
    Ok((meta, out))
}

pub(super) fn read_full(
    conn: &Connection,
    keys: &VaultKeys,
    id: &RecordId,
) -> Result<(Record, SignatureStatus)> {
    let (ck, s, b) = record_key(conn, keys, id)?;
    let summary = decode_summary(&ck, id, &s)?;
    let pt = open_bytes(&ck, ObjectKind::VaultValue, &tagged(T_REC_BODY, &id.0), &b)
        .map_err(|_| tampered("record", &id.0))?;
    let body: StoredBody = serde_json::from_slice(&pt).map_err(|_| tampered("record", &id.0))?;
    let mut resource = body.resource;
    let aids: Vec<Vec<u8>> = conn
        .prepare_cached("SELECT id FROM attachments WHERE record = ?1")?
        .query_map([&id.0[..]], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for aid in aids {
        let (meta, data) = read_attachment(conn, keys, &aid)?;
        if meta.record != *id {
            return Err(tampered("attachment", &aid));
        }
        fhir::put_attachment(&mut resource, meta.slot, &data);
    }
    let status = match &body.prov {
        StoredProv::None => SignatureStatus::Unsigned,
        StoredProv::Device { sig } => {
            let ok = unhex(sig)
                .and_then(|s| <[u8; 64]>::try_from(s).ok())
                .is_some_and(|sig| {
                    keys.identity
                        .signing_public()
                        .verify(
                            label::RECORD_SIG,
                            &record_signing_bytes(&resource),
                            &sig,
                            "record",
                        )
                        .is_ok()
                });
            if ok {
                SignatureStatus::Valid {
                    signer: "this device".into(),
                    card_hash: String::new(),
                }
            } else {
                SignatureStatus::Invalid
            }
        }
        StoredProv::Card { card, sig } => {
            let parsed = unhex(card)
                .and_then(|c| Card::from_bytes(&c).ok())
                .zip(unhex(sig).and_then(|s| <[u8; 64]>::try_from(s).ok()));
            match parsed {
                Some((card, sig)) if verify_record_signature(&resource, &card, &sig).is_ok() => {
                    SignatureStatus::Valid {
                        signer: card.body.name.clone(),
                        card_hash: hex(&card.hash()),
                    }
                }
                _ => SignatureStatus::Invalid,
            }
        }
    };
    Ok((Record { summary, resource }, status))
}

pub(super) fn read_record(conn: &Connection, keys: &VaultKeys, id: &RecordId) -> Result<Record> {
    let (mut rec, status) = read_full(conn, keys, id)?;
    rec.summary.signature = status;
    Ok(rec)
}

pub(super) fn all_ids(conn: &Connection) -> Result<Vec<RecordId>> {
    let ids: Vec<Vec<u8>> = conn
        .prepare("SELECT id FROM records ORDER BY rowid")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ids.into_iter()
        .map(|v| {
            v.try_into()
                .map(RecordId)
                .map_err(|_| VaultError::BadHeader("record id length"))
        })
        .collect()
}
