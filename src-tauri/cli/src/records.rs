//! Loading the records to share: a FHIR Bundle file or a FHIR bulk-export (Synthea) NDJSON
//! directory, routed to one patient. Inline attachment bytes (DocumentReference
//! `content[].attachment.data`, `Binary.data`) are taken out of the resource and shared as
//! separate attachment items, the way the vault stores them.
//!
//! Errors name the file and a position, never the text found there.

use std::path::Path;

use carekey_client::patient::ShareItem;
use carekey_core::grant::Category;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Largest input file read.
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Which categories to share.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Everything.
    All,
    /// These categories only.
    Only(Vec<Category>),
}

impl Selection {
    fn wants(&self, c: Category) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(v) => v.contains(&c),
        }
    }
}

/// The category names `--records` accepts (the grant's categories).
pub const CATEGORY_NAMES: &str = "allergies, conditions, medications, immunizations, procedures, \
     observations, documents, encounters, notes, demographics, other";

/// Stable name of a category.
pub fn category_name(c: Category) -> &'static str {
    match c {
        Category::Allergies => "allergies",
        Category::Conditions => "conditions",
        Category::Medications => "medications",
        Category::Immunizations => "immunizations",
        Category::Procedures => "procedures",
        Category::Observations => "observations",
        Category::Documents => "documents",
        Category::Encounters => "encounters",
        Category::Notes => "notes",
        Category::Other => "other",
        Category::Demographics => "demographics",
    }
}

/// Parses `all` or a comma-separated list of category names (singular forms accepted).
pub fn parse_selection(s: &str) -> Result<Selection> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("all") {
        return Ok(Selection::All);
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = part.to_ascii_lowercase();
        let c = Category::ALL
            .into_iter()
            .find(|c| {
                let n = category_name(*c);
                p == n
                    || Some(p.as_str()) == n.strip_suffix('s')
                    || (p == "allergy" && n == "allergies")
            })
            .or(match p.as_str() {
                "patient" => Some(Category::Demographics),
                "labs" | "vitals" => Some(Category::Observations),
                _ => None,
            })
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--records: unknown category {part:?}; use `all` or some of: {CATEGORY_NAMES}"
                ))
            })?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage(format!(
            "--records: name at least one category, or `all` ({CATEGORY_NAMES})"
        )));
    }
    Ok(Selection::Only(out))
}

/// The share category of a FHIR resource type.
pub fn category_of(resource_type: &str) -> Category {
    match resource_type {
        "AllergyIntolerance" => Category::Allergies,
        "Condition" => Category::Conditions,
        "MedicationStatement"
        | "MedicationRequest"
        | "MedicationAdministration"
        | "MedicationDispense"
        | "Medication" => Category::Medications,
        "Immunization" => Category::Immunizations,
        "Procedure" => Category::Procedures,
        "Observation" | "DiagnosticReport" => Category::Observations,
        "DocumentReference" | "Binary" | "Composition" | "Media" => Category::Documents,
        "Encounter" => Category::Encounters,
        "Patient" => Category::Demographics,
        _ => Category::Other,
    }
}

/// What was loaded.
#[derive(Debug)]
pub struct Loaded {
    /// Items to share (records first in file order, each followed by its attachments).
    pub items: Vec<ShareItem>,
    /// FHIR records among them.
    pub records: usize,
    /// Attachments among them.
    pub attachments: usize,
    /// Resources of the input left out by `--records`.
    pub skipped: usize,
}

fn read_file(p: &Path) -> Result<Vec<u8>> {
    let shown = p.display();
    let meta =
        std::fs::metadata(p).map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))?;
    if !meta.is_file() {
        return Err(CliError::Input(format!("{shown}: not a regular file")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(CliError::Input(format!("{shown}: larger than 512 MiB")));
    }
    std::fs::read(p).map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))
}

fn json_error(file: &str, e: &serde_json::Error) -> CliError {
    // serde_json's message can quote the input: keep only the position.
    CliError::Input(format!(
        "{file}: not valid JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// Loads the resources of a FHIR Bundle.
pub fn from_bundle(path: &Path, sel: &Selection) -> Result<Loaded> {
    let bytes = Zeroizing::new(read_file(path)?);
    let shown = path.display().to_string();
    let bundle: Value = serde_json::from_slice(&bytes).map_err(|e| json_error(&shown, &e))?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(CliError::Input(format!("{shown}: not a FHIR Bundle")));
    }
    let entries = match bundle.get("entry") {
        Some(Value::Array(a)) => a.as_slice(),
        None => &[],
        Some(_) => {
            return Err(CliError::Input(format!(
                "{shown}: Bundle.entry is not a list"
            )));
        }
    };
    let mut resources = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        match e.get("resource") {
            Some(r) => resources.push((format!("{shown}: entry {i}"), r.clone())),
            None => {
                return Err(CliError::Input(format!(
                    "{shown}: entry {i} has no resource"
                )));
            }
        }
    }
    to_items(resources, sel)
}

/// Loads one patient's resources from a bulk-export NDJSON directory (`*.ndjson` except the
/// export's `log.ndjson`). Returns the items, the chosen patient's position and the number
/// of patients found.
pub fn from_ndjson_dir(
    dir: &Path,
    patient_index: usize,
    sel: &Selection,
) -> Result<(Loaded, usize)> {
    let shown = dir.display();
    let rd =
        std::fs::read_dir(dir).map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))?;
    let mut paths = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| CliError::Input(format!("{shown}: {}", e.kind())))?;
        let p = ent.path();
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ndjson") && !name.starts_with("log") && p.is_file() {
            paths.push((name, p));
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(CliError::Input(format!("{shown}: no .ndjson files")));
    }
    let mut files = Vec::with_capacity(paths.len());
    for (name, p) in &paths {
        files.push(carekey_vault::NdjsonFile {
            name: name.clone(),
            data: read_file(p)?,
        });
    }
    let routed = carekey_vault::route_by_patient(&files)
        .map_err(|e| CliError::Input(format!("{shown}: {e}")))?;
    drop(files);
    let n = routed.patients.len();
    let Some((_, patient_files)) = routed.patients.into_iter().nth(patient_index) else {
        return Err(CliError::Usage(format!(
            "--patient-index {patient_index}: the export has {n} patient(s) (0 to {})",
            n.saturating_sub(1)
        )));
    };
    let mut resources = Vec::new();
    for f in &patient_files {
        for (i, line) in f.data.split(|b| *b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let at = format!("{shown}: patient {patient_index}, line {}", i + 1);
            let v: Value = serde_json::from_slice(line).map_err(|e| json_error(&at, &e))?;
            resources.push((at, v));
        }
    }
    Ok((to_items(resources, sel)?, n))
}

fn record_id(index: usize, ty: &str, id: &str, part: usize) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"carekey-cli/record-id\0");
    h.update((index as u64).to_be_bytes());
    h.update((part as u64).to_be_bytes());
    h.update(ty.as_bytes());
    h.update(b"/");
    h.update(id.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn b64_decode(t: &str) -> Option<Vec<u8>> {
    let cleaned: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    data_encoding::BASE64
        .decode(cleaned.as_bytes())
        .ok()
        .or_else(|| data_encoding::BASE64_NOPAD.decode(cleaned.as_bytes()).ok())
}

fn extension(content_type: Option<&str>) -> &'static str {
    let ct = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    match ct {
        "text/plain" => ".txt",
        "text/html" => ".html",
        "application/pdf" => ".pdf",
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "application/json" | "application/fhir+json" => ".json",
        "application/xml" | "text/xml" => ".xml",
        _ => ".bin",
    }
}

struct Taken {
    title: Option<String>,
    content_type: Option<String>,
    data: Zeroizing<Vec<u8>>,
}

/// Takes the inline base64 out of a resource's attachments.
fn take_attachments(r: &mut Value, at: &str) -> Result<Vec<Taken>> {
    let bad = || CliError::Input(format!("{at}: attachment data is not valid base64"));
    let mut out = Vec::new();
    if r.get("resourceType").and_then(Value::as_str) == Some("Binary") {
        if let Some(Value::String(d)) = r.get("data") {
            let data = Zeroizing::new(b64_decode(d).ok_or_else(bad)?);
            let ct = r
                .get("contentType")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(o) = r.as_object_mut() {
                o.remove("data");
            }
            out.push(Taken {
                title: None,
                content_type: ct,
                data,
            });
        }
    } else if let Some(Value::Array(content)) = r.get_mut("content") {
        for c in content.iter_mut() {
            let Some(att) = c.get_mut("attachment").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(Value::String(d)) = att.get("data") else {
                continue;
            };
            let data = Zeroizing::new(b64_decode(d).ok_or_else(bad)?);
            att.remove("data");
            out.push(Taken {
                title: att.get("title").and_then(Value::as_str).map(str::to_owned),
                content_type: att
                    .get("contentType")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                data,
            });
        }
    }
    Ok(out)
}

fn to_items(resources: Vec<(String, Value)>, sel: &Selection) -> Result<Loaded> {
    let mut loaded = Loaded {
        items: Vec::new(),
        records: 0,
        attachments: 0,
        skipped: 0,
    };
    for (index, (at, mut r)) in resources.into_iter().enumerate() {
        let ty = match r.get("resourceType").and_then(Value::as_str) {
            Some(t)
                if !t.is_empty()
                    && t.len() < 64
                    && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                t.to_owned()
            }
            _ => {
                return Err(CliError::Input(format!(
                    "{at}: not a FHIR resource (no valid resourceType)"
                )));
            }
        };
        let category = category_of(&ty);
        if !sel.wants(category) {
            loaded.skipped += 1;
            continue;
        }
        let fhir_id = r
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let taken = take_attachments(&mut r, &at)?;
        let data = Zeroizing::new(
            serde_json::to_vec(&r)
                .map_err(|_| CliError::Input(format!("{at}: could not re-encode")))?,
        );
        loaded.items.push(ShareItem {
            record_id: record_id(index, &ty, &fhir_id, 0),
            category,
            title: ty.clone(),
            data,
            attachment: false,
        });
        loaded.records += 1;
        for (n, t) in taken.into_iter().enumerate() {
            let ext = extension(t.content_type.as_deref());
            let title = match t.title {
                Some(s) if !s.trim().is_empty() && s.len() <= 120 => {
                    if s.contains('.') {
                        s
                    } else {
                        format!("{s}{ext}")
                    }
                }
                _ => format!("{ty}-attachment-{}{ext}", n + 1),
            };
            loaded.items.push(ShareItem {
                record_id: record_id(index, &ty, &fhir_id, n + 1),
                category,
                title,
                data: t.data,
                attachment: true,
            });
            loaded.attachments += 1;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_parses_names_and_rejects_unknown() {
        assert!(matches!(parse_selection("all"), Ok(Selection::All)));
        match parse_selection("conditions, allergy,labs") {
            Ok(Selection::Only(v)) => assert_eq!(
                v,
                vec![
                    Category::Conditions,
                    Category::Allergies,
                    Category::Observations
                ]
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse_selection("secrets").is_err());
        assert!(parse_selection(",").is_err());
    }

    #[test]
    fn attachments_are_taken_out() {
        let r = serde_json::json!({"resourceType": "DocumentReference", "id": "d1",
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]});
        let l = to_items(vec![("t".into(), r)], &Selection::All).expect("loads");
        assert_eq!((l.records, l.attachments), (1, 1));
        assert_eq!(l.items[1].data.as_slice(), b"hello");
        assert!(l.items[1].attachment);
        assert_eq!(l.items[1].title, "DocumentReference-attachment-1.txt");
        assert!(!String::from_utf8_lossy(&l.items[0].data).contains("aGVsbG8"));
        let only = to_items(
            vec![(
                "t".into(),
                serde_json::json!({"resourceType": "Condition", "id": "c"}),
            )],
            &Selection::Only(vec![Category::Allergies]),
        )
        .expect("loads");
        assert_eq!((only.records, only.skipped), (0, 1));
    }

    #[test]
    fn bad_input_is_an_error_without_content() {
        let r = serde_json::json!({"resourceType": "Binary", "data": "secret!!"});
        let e = to_items(vec![("f".into(), r)], &Selection::All).expect_err("bad base64");
        assert!(!e.to_string().contains("secret"));
        let e = to_items(
            vec![("f".into(), serde_json::json!(["x"]))],
            &Selection::All,
        )
        .expect_err("not a resource");
        assert_eq!(e.code(), "input");
    }
}
