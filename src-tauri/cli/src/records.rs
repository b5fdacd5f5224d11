//! Reading the records to share: a FHIR Bundle file or a FHIR bulk-export (Synthea) NDJSON
//! directory, routed to one patient. The tool only reads and checks the files (so a bad one is
//! reported with its file and position); the patient session imports them into its vault and
//! builds the share items from there, as the patient app does (`carekey_app::share`, issue 10
//! "Sharing from the vault": inline attachment bytes travel as separate attachment items).
//!
//! Errors name the file and a position, never the text found there.

use std::path::Path;

use carekey_app::session::ImportData;
use carekey_core::grant::Category;
use carekey_vault::NdjsonFile;
use serde_json::Value;
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
    /// The categories chosen, as the share screen sends them.
    pub fn categories(&self) -> Vec<Category> {
        match self {
            Selection::All => Category::ALL.to_vec(),
            Selection::Only(v) => v.clone(),
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

/// Reads a FHIR Bundle file and checks its shape (JSON, `resourceType` Bundle, a resource in
/// every entry) so a bad file is refused with its position before any session starts.
pub fn from_bundle(path: &Path) -> Result<ImportData> {
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
    for (i, e) in entries.iter().enumerate() {
        match e.get("resource") {
            Some(r) => check_resource(r, &format!("{shown}: entry {i}"))?,
            None => {
                return Err(CliError::Input(format!(
                    "{shown}: entry {i} has no resource"
                )));
            }
        }
    }
    Ok(ImportData::Bundle(bytes))
}

/// One patient's NDJSON files from a bulk-export directory (`*.ndjson` except the export's
/// `log.ndjson`). Returns the files and the number of patients found.
pub fn from_ndjson_dir(dir: &Path, patient_index: usize) -> Result<(ImportData, usize)> {
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
        files.push(NdjsonFile {
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
    for f in &patient_files {
        for (i, line) in f.data.split(|b| *b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let at = format!("{shown}: patient {patient_index}, line {}", i + 1);
            let v: Value = serde_json::from_slice(line).map_err(|e| json_error(&at, &e))?;
            check_resource(&v, &at)?;
        }
    }
    Ok((ImportData::Ndjson(patient_files), n))
}

/// A FHIR resource: an object with a plausible `resourceType`.
fn check_resource(r: &Value, at: &str) -> Result<()> {
    match r.get("resourceType").and_then(Value::as_str) {
        Some(t)
            if !t.is_empty() && t.len() < 64 && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ok(())
        }
        _ => Err(CliError::Input(format!(
            "{at}: not a FHIR resource (no valid resourceType)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_parses_names_and_rejects_unknown() {
        assert_eq!(
            parse_selection("all").expect("all").categories(),
            Category::ALL.to_vec()
        );
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
    fn bad_input_is_an_error_without_content() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("b.json");
        std::fs::write(
            &p,
            br#"{"resourceType":"Bundle","entry":[{"resource":["secret!!"]}]}"#,
        )
        .expect("written");
        let e = from_bundle(&p).expect_err("not a resource");
        assert_eq!(e.code(), "input");
        assert!(!e.to_string().contains("secret"), "{e}");
        std::fs::write(&p, br#"{"resourceType":"Patient"}"#).expect("written");
        assert!(from_bundle(&p).is_err(), "not a Bundle");
    }
}
