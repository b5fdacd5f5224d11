//! The documents screen: reports, notes, scans and images with their attachments.

use carekey_vault::{AttachmentInfo, Record};
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::date::date_sort_key;
use super::json::{self, arr, concept_text, first, reference_display, resource_date, str_at};
use super::timeline::newest_first;

/// What kind of file an attachment is, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    /// `application/pdf`.
    Pdf,
    /// `image/*`.
    Image,
    /// `text/*`: clinical notes (Synthea's DocumentReferences are `text/plain`), shown as plain
    /// text, never rendered as markup.
    Text,
    /// Anything else (unknown or missing content type).
    Other,
}

impl DocKind {
    /// The kind of a MIME type (parameters such as `; charset=utf-8` ignored, case-insensitive).
    pub fn of_content_type(ct: Option<&str>) -> Self {
        let Some(ct) = ct else {
            return DocKind::Other;
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence == "application/pdf" {
            DocKind::Pdf
        } else if essence.starts_with("image/") {
            DocKind::Image
        } else if essence.starts_with("text/") {
            DocKind::Text
        } else {
            DocKind::Other
        }
    }
}

/// One file of a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentAttachment {
    /// The vault's attachment id (hex, for `Vault::attachment`); `None` for content the vault
    /// keeps inside the resource (DiagnosticReport.presentedForm, Media.content) or that lives
    /// elsewhere (`url`).
    pub id: Option<String>,
    /// MIME type.
    pub content_type: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Size in bytes (the vault's plaintext size, else `attachment.size`, else estimated from
    /// the inline base64).
    pub size: Option<u64>,
    /// PDF, image or other.
    pub kind: DocKind,
    /// External location (`attachment.url`) when the content is not inline.
    pub url: Option<String>,
}

/// One row of the documents screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentRow {
    /// Record id (hex).
    pub id: String,
    /// `DocumentReference`, `DiagnosticReport`, `Media`, `Binary` (or another type that
    /// carries vault attachments).
    pub fhir_type: String,
    /// Title.
    pub title: String,
    /// Date text.
    pub date: Option<String>,
    /// Unix seconds of `date`.
    pub sort_key: Option<i64>,
    /// Author.
    pub author: Option<String>,
    /// Status code.
    pub status: Option<String>,
    /// The first attachment's kind (`other` without attachments).
    pub kind: DocKind,
    /// Files.
    pub attachments: Vec<DocumentAttachment>,
}

/// Where the bytes of one [`DocumentAttachment`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSource<'a> {
    /// In the vault's attachment store, under this id.
    Vault(&'a str),
    /// Base64 inside the resource.
    Inline(&'a str),
    /// Not on this device (`url` only, or no data at all).
    Nowhere,
}

fn from_vault(a: &AttachmentInfo) -> DocumentAttachment {
    DocumentAttachment {
        id: json::text(&a.id),
        content_type: a.content_type.as_deref().and_then(json::text),
        title: a.title.as_deref().and_then(json::text),
        size: Some(a.size),
        kind: DocKind::of_content_type(a.content_type.as_deref()),
        url: None,
    }
}

/// A FHIR Attachment still inside the resource.
fn from_resource(att: &Value) -> Option<DocumentAttachment> {
    if !att.is_object() {
        return None;
    }
    let content_type = str_at(att, "contentType").and_then(json::text);
    let size = att
        .get("size")
        .and_then(Value::as_u64)
        .or_else(|| str_at(att, "data").map(base64_len));
    Some(DocumentAttachment {
        id: None,
        kind: DocKind::of_content_type(content_type.as_deref()),
        content_type,
        title: str_at(att, "title").and_then(json::text),
        size,
        url: str_at(att, "url").and_then(json::text),
    })
}

/// Decoded size of base64 text (whitespace ignored).
fn base64_len(b64: &str) -> u64 {
    let mut n = 0u64;
    let mut pad = 0u64;
    for c in b64.bytes() {
        if c == b'=' {
            pad += 1;
        } else if !c.is_ascii_whitespace() {
            n += 1;
        }
    }
    ((n + pad) / 4 * 3 + ((n + pad) % 4).saturating_sub(1)).saturating_sub(pad)
}

/// The files of a record, in the order [`DocumentRow::attachments`] lists them, each with
/// where its bytes are.
fn files(rec: &Record) -> Vec<(DocumentAttachment, FileSource<'_>)> {
    let r = &rec.resource;
    let ty = str_at(r, "resourceType").unwrap_or(&rec.summary.fhir_type);
    let mut atts: Vec<(DocumentAttachment, FileSource<'_>)> = rec
        .summary
        .attachments
        .iter()
        .map(|a| (from_vault(a), FileSource::Vault(&a.id)))
        .collect();
    let have_vault = !atts.is_empty();
    // Attachments the vault did not take out of the resource.
    let inline: Vec<&Value> = match ty {
        "DocumentReference" => arr(r, "content")
            .iter()
            .filter_map(|c| c.get("attachment"))
            .collect(),
        "DiagnosticReport" => arr(r, "presentedForm").iter().collect(),
        "Media" => r.get("content").into_iter().collect(),
        _ => Vec::new(),
    };
    for a in inline {
        // Content with inline data is what the vault stored (and re-inlined on read).
        if have_vault && a.get("data").is_some() {
            continue;
        }
        if let Some(d) = from_resource(a) {
            let src = str_at(a, "data").map_or(FileSource::Nowhere, FileSource::Inline);
            atts.push((d, src));
        }
    }
    if ty == "Binary"
        && !have_vault
        && let Some(data) = str_at(r, "data")
    {
        let ct = str_at(r, "contentType").and_then(json::text);
        atts.push((
            DocumentAttachment {
                id: None,
                kind: DocKind::of_content_type(ct.as_deref()),
                content_type: ct,
                title: None,
                size: Some(base64_len(data)),
                url: None,
            },
            FileSource::Inline(data),
        ));
    }
    atts
}

/// File `index` of a record (as [`DocumentRow::attachments`] numbers them) and where its bytes
/// are; `None` past the last file.
pub fn file(rec: &Record, index: usize) -> Option<(DocumentAttachment, FileSource<'_>)> {
    files(rec).into_iter().nth(index)
}

/// Decodes a FHIR `base64Binary` (RFC 4648 with padding; line breaks and spaces, which some
/// exporters insert, are skipped). `None` when it is not base64.
pub fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<Vec<u8>> =
        Zeroizing::new(text.bytes().filter(|c| !c.is_ascii_whitespace()).collect());
    data_encoding::BASE64
        .decode(&compact)
        .or_else(|_| data_encoding::BASE64_NOPAD.decode(&compact))
        .ok()
        .map(Zeroizing::new)
}

/// The documents-screen row of one record, `None` when it carries no document.
pub fn document(rec: &Record) -> Option<DocumentRow> {
    let r = &rec.resource;
    let ty = str_at(r, "resourceType").unwrap_or(&rec.summary.fhir_type);
    let atts: Vec<DocumentAttachment> = files(rec).into_iter().map(|(a, _)| a).collect();
    let have_vault = !rec.summary.attachments.is_empty();
    let is_doc = match ty {
        "DocumentReference" | "Media" | "Binary" => true,
        "DiagnosticReport" => !atts.is_empty(),
        _ => have_vault,
    };
    if !is_doc {
        return None;
    }
    let title = match ty {
        "DocumentReference" => str_at(r, "description")
            .and_then(json::text)
            .or_else(|| r.get("type").and_then(concept_text)),
        "DiagnosticReport" => r.get("code").and_then(concept_text),
        "Media" => r
            .get("content")
            .and_then(|c| str_at(c, "title"))
            .and_then(json::text)
            .or_else(|| r.get("type").and_then(concept_text))
            .or_else(|| r.get("modality").and_then(concept_text)),
        _ => None,
    }
    .or_else(|| atts.iter().find_map(|a| a.title.clone()))
    .unwrap_or_else(|| rec.summary.title.clone());
    let date = resource_date(r)
        .or_else(|| str_at(r, "createdDateTime"))
        .and_then(json::text)
        .or_else(|| rec.summary.date.as_deref().and_then(json::text));
    let author = first(r, "author")
        .or_else(|| first(r, "performer"))
        .or_else(|| r.get("operator"))
        .and_then(reference_display)
        .or_else(|| rec.summary.author.as_deref().and_then(json::text));
    Some(DocumentRow {
        id: rec.summary.id.to_string(),
        fhir_type: json::clip(ty, json::MAX_TEXT_CHARS),
        title: json::title(&title, ty),
        sort_key: date.as_deref().and_then(date_sort_key),
        date,
        author,
        status: json::status_code(r.get("status")),
        kind: atts.first().map_or(DocKind::Other, |a| a.kind),
        attachments: atts,
    })
}

/// The documents screen: DocumentReference, Media and Binary records, DiagnosticReports with a
/// `presentedForm`, and any other record carrying vault attachments; newest first, undated
/// last.
pub fn documents(records: &[Record]) -> Vec<DocumentRow> {
    let mut rows: Vec<DocumentRow> = records.iter().filter_map(document).collect();
    rows.sort_by(|a, b| newest_first(a.sort_key, b.sort_key));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_sizes() {
        assert_eq!(base64_len(""), 0);
        assert_eq!(base64_len("YQ=="), 1);
        assert_eq!(base64_len("YWI="), 2);
        assert_eq!(base64_len("YWJj"), 3);
        assert_eq!(base64_len("YWJjZA"), 4);
        assert_eq!(base64_len("YWJj\nZA=="), 4);
    }

    #[test]
    fn inline_base64_decodes_with_line_breaks_and_refuses_garbage() {
        assert_eq!(
            decode_base64("YWJj\nZA==").as_deref().map(Vec::as_slice),
            Some(&b"abcd"[..])
        );
        assert_eq!(
            decode_base64("YWJjZA").as_deref().map(Vec::as_slice),
            Some(&b"abcd"[..])
        );
        assert!(decode_base64("not base64!").is_none());
    }

    #[test]
    fn kinds() {
        assert_eq!(
            DocKind::of_content_type(Some("application/PDF")),
            DocKind::Pdf
        );
        assert_eq!(DocKind::of_content_type(Some("image/png")), DocKind::Image);
        assert_eq!(
            DocKind::of_content_type(Some("text/plain; charset=utf-8")),
            DocKind::Text
        );
        assert_eq!(
            DocKind::of_content_type(Some("application/octet-stream")),
            DocKind::Other
        );
        assert_eq!(DocKind::of_content_type(None), DocKind::Other);
    }
}
