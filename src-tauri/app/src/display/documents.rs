//! The documents screen: reports, notes, scans and images with their attachments.

use carekey_vault::{AttachmentInfo, Record};
use serde::Serialize;
use serde_json::Value;

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
    /// Anything else (text notes, unknown or missing content type).
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

fn document(rec: &Record) -> Option<DocumentRow> {
    let r = &rec.resource;
    let ty = str_at(r, "resourceType").unwrap_or(&rec.summary.fhir_type);
    let mut atts: Vec<DocumentAttachment> =
        rec.summary.attachments.iter().map(from_vault).collect();
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
        atts.extend(from_resource(a));
    }
    if ty == "Binary"
        && !have_vault
        && let Some(data) = str_at(r, "data")
    {
        let ct = str_at(r, "contentType").and_then(json::text);
        atts.push(DocumentAttachment {
            id: None,
            kind: DocKind::of_content_type(ct.as_deref()),
            content_type: ct,
            title: None,
            size: Some(base64_len(data)),
            url: None,
        });
    }
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
    fn kinds() {
        assert_eq!(
            DocKind::of_content_type(Some("application/PDF")),
            DocKind::Pdf
        );
        assert_eq!(DocKind::of_content_type(Some("image/png")), DocKind::Image);
        assert_eq!(
            DocKind::of_content_type(Some("text/plain; charset=utf-8")),
            DocKind::Other
        );
        assert_eq!(DocKind::of_content_type(None), DocKind::Other);
    }
}
