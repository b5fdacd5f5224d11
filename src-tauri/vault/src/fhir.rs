//! FHIR R4 handling: typed summaries for the UI, attachment extraction, Bundle and NDJSON
//! parsing with positions, and routing of bulk exports by patient.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Position, Result, VaultError};

/// What the UI groups records by (12 groups: vitals apart from other observations, a
/// directory of people and places). Not the grant's scope category (`carekey_core::grant::Category`,
/// 11 values); the serde names below are stored data and blind-index terms, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordGroup {
    /// Patient demographics.
    Patient,
    /// Conditions / problems.
    Condition,
    /// Allergies and intolerances.
    Allergy,
    /// Medications (statements, requests, the medication itself).
    Medication,
    /// Immunizations.
    Immunization,
    /// Lab results and other observations.
    Observation,
    /// Vital signs (Observation with category vital-signs).
    Vitals,
    /// Procedures.
    Procedure,
    /// Encounters / visits.
    Encounter,
    /// Documents, reports, notes with attachments.
    Document,
    /// People and organisations (practitioners, organisations, locations).
    Directory,
    /// Any other resource type: kept and shown generically.
    Other,
}

impl RecordGroup {
    /// Stable lower-case name (also the blind-index term).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordGroup::Patient => "patient",
            RecordGroup::Condition => "condition",
            RecordGroup::Allergy => "allergy",
            RecordGroup::Medication => "medication",
            RecordGroup::Immunization => "immunization",
            RecordGroup::Observation => "observation",
            RecordGroup::Vitals => "vitals",
            RecordGroup::Procedure => "procedure",
            RecordGroup::Encounter => "encounter",
            RecordGroup::Document => "document",
            RecordGroup::Directory => "directory",
            RecordGroup::Other => "other",
        }
    }
}

/// A coded concept found in a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// Code system URI.
    pub system: String,
    /// Code.
    pub code: String,
    /// Display text if any.
    pub display: Option<String>,
}

/// Label/value pair shown on a record card (e.g. "value" → "7.2 mmol/L").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Label.
    pub key: String,
    /// Value as text.
    pub value: String,
}

/// The summary fields derived from a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Extracted {
    pub fhir_type: String,
    pub fhir_id: String,
    pub category: RecordGroup,
    pub title: String,
    pub date: Option<String>,
    pub key_values: Vec<KeyValue>,
    pub codes: Vec<Code>,
    pub author: Option<String>,
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

fn concept_text(v: &Value) -> Option<String> {
    if let Some(t) = v.get("text").and_then(s) {
        return Some(t.to_owned());
    }
    let codings = v.get("coding")?.as_array()?;
    for c in codings {
        if let Some(d) = c.get("display").and_then(s) {
            return Some(d.to_owned());
        }
    }
    codings
        .first()
        .and_then(|c| c.get("code"))
        .and_then(s)
        .map(str::to_owned)
}

fn collect_codes(v: &Value, out: &mut Vec<Code>) {
    if let Some(codings) = v.get("coding").and_then(Value::as_array) {
        for c in codings {
            if let (Some(sys), Some(code)) =
                (c.get("system").and_then(s), c.get("code").and_then(s))
            {
                out.push(Code {
                    system: sys.to_owned(),
                    code: code.to_owned(),
                    display: c.get("display").and_then(s).map(str::to_owned),
                });
            }
        }
    }
}

fn first<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    match v.get(k)? {
        Value::Array(a) => a.first(),
        other => Some(other),
    }
}

fn human_name(v: &Value) -> Option<String> {
    let n = first(v, "name")?;
    if let Some(t) = n.get("text").and_then(s) {
        return Some(t.to_owned());
    }
    let mut parts: Vec<String> = Vec::new();
    if let Some(g) = n.get("given").and_then(Value::as_array) {
        parts.extend(g.iter().filter_map(s).map(str::to_owned));
    }
    if let Some(f) = n.get("family").and_then(s) {
        parts.push(f.to_owned());
    }
    if parts.is_empty() {
        n.as_str().map(str::to_owned)
    } else {
        Some(parts.join(" "))
    }
}

fn quantity(v: &Value) -> Option<String> {
    let val = v.get("value")?;
    let num = match val {
        Value::Number(n) => n.to_string(),
        other => other.as_str()?.to_owned(),
    };
    let unit = v
        .get("unit")
        .and_then(s)
        .or_else(|| v.get("code").and_then(s));
    Some(match unit {
        Some(u) => format!("{num} {u}"),
        None => num,
    })
}

fn value_x(v: &Value) -> Option<String> {
    if let Some(q) = v.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(c) = v.get("valueCodeableConcept") {
        return concept_text(c);
    }
    for k in [
        "valueString",
        "valueDateTime",
        "valueBoolean",
        "valueInteger",
    ] {
        if let Some(x) = v.get(k) {
            return Some(match x {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            });
        }
    }
    None
}

fn reference_display(v: &Value) -> Option<String> {
    v.get("display").and_then(s).map(str::to_owned)
}

const DATE_FIELDS: &[&str] = &[
    "effectiveDateTime",
    "effectiveInstant",
    "onsetDateTime",
    "performedDateTime",
    "occurrenceDateTime",
    "authoredOn",
    "recordedDate",
    "issued",
    "date",
    "dateAsserted",
    "birthDate",
];
const PERIOD_FIELDS: &[&str] = &[
    "effectivePeriod",
    "performedPeriod",
    "period",
    "onsetPeriod",
];
const CODE_FIELDS: &[&str] = &[
    "code",
    "vaccineCode",
    "medicationCodeableConcept",
    "type",
    "category",
];

fn is_vitals(r: &Value) -> bool {
    r.get("category")
        .and_then(Value::as_array)
        .is_some_and(|cats| {
            cats.iter().any(|c| {
                c.get("coding").and_then(Value::as_array).is_some_and(|cs| {
                    cs.iter()
                        .any(|x| x.get("code").and_then(s) == Some("vital-signs"))
                })
            })
        })
}

/// Derives the UI summary of a resource. Never fails: unknown shapes give a generic summary.
pub(crate) fn extract(r: &Value) -> Extracted {
    let fhir_type = r
        .get("resourceType")
        .and_then(s)
        .unwrap_or("Unknown")
        .to_owned();
    let fhir_id = r.get("id").and_then(s).unwrap_or("").to_owned();
    let category = match fhir_type.as_str() {
        "Patient" => RecordGroup::Patient,
        "Condition" => RecordGroup::Condition,
        "AllergyIntolerance" => RecordGroup::Allergy,
        "MedicationStatement"
        | "MedicationRequest"
        | "Medication"
        | "MedicationAdministration"
        | "MedicationDispense" => RecordGroup::Medication,
        "Immunization" => RecordGroup::Immunization,
        "Observation" if is_vitals(r) => RecordGroup::Vitals,
        "Observation" => RecordGroup::Observation,
        "Procedure" => RecordGroup::Procedure,
        "Encounter" => RecordGroup::Encounter,
        "DocumentReference" | "DiagnosticReport" | "Composition" | "Binary" => {
            RecordGroup::Document
        }
        "Practitioner" | "PractitionerRole" | "Organization" | "Location" => RecordGroup::Directory,
        _ => RecordGroup::Other,
    };

    let mut codes = Vec::new();
    for k in CODE_FIELDS {
        match r.get(*k) {
            Some(Value::Array(a)) => a.iter().for_each(|c| collect_codes(c, &mut codes)),
            Some(c) => collect_codes(c, &mut codes),
            None => {}
        }
    }

    let title = match fhir_type.as_str() {
        "Patient" | "Practitioner" => human_name(r),
        "Organization" | "Location" => r.get("name").and_then(s).map(str::to_owned),
        "Composition" => r.get("title").and_then(s).map(str::to_owned),
        "Immunization" => r.get("vaccineCode").and_then(concept_text),
        "MedicationStatement" | "MedicationRequest" | "MedicationAdministration" => r
            .get("medicationCodeableConcept")
            .and_then(concept_text)
            .or_else(|| r.get("medicationReference").and_then(reference_display)),
        "DocumentReference" => r
            .get("description")
            .and_then(s)
            .map(str::to_owned)
            .or_else(|| r.get("type").and_then(concept_text)),
        "Encounter" => first(r, "type").and_then(concept_text),
        "Binary" => r.get("contentType").and_then(s).map(str::to_owned),
        _ => None,
    }
    .or_else(|| r.get("code").and_then(concept_text))
    .or_else(|| first(r, "type").and_then(concept_text))
    .unwrap_or_else(|| fhir_type.clone());

    let date = DATE_FIELDS
        .iter()
        .find_map(|k| r.get(*k).and_then(s))
        .or_else(|| {
            PERIOD_FIELDS
                .iter()
                .find_map(|k| r.get(*k).and_then(|p| p.get("start")).and_then(s))
        })
        .map(str::to_owned);

    let mut key_values = Vec::new();
    if let Some(v) = value_x(r) {
        key_values.push(KeyValue {
            key: "value".into(),
            value: v,
        });
    }
    if let Some(comps) = r.get("component").and_then(Value::as_array) {
        for c in comps {
            if let (Some(k), Some(v)) = (c.get("code").and_then(concept_text), value_x(c)) {
                key_values.push(KeyValue { key: k, value: v });
            }
        }
    }
    for (k, field) in [
        ("status", "status"),
        ("gender", "gender"),
        ("criticality", "criticality"),
    ] {
        if let Some(v) = r.get(field).and_then(s) {
            key_values.push(KeyValue {
                key: k.into(),
                value: v.to_owned(),
            });
        }
    }
    if let Some(v) = r.get("clinicalStatus").and_then(concept_text) {
        key_values.push(KeyValue {
            key: "clinical status".into(),
            value: v,
        });
    }
    if let Some(v) = first(r, "dosage")
        .or_else(|| first(r, "dosageInstruction"))
        .and_then(|d| d.get("text"))
        .and_then(s)
    {
        key_values.push(KeyValue {
            key: "dosage".into(),
            value: v.to_owned(),
        });
    }

    let author = first(r, "author")
        .and_then(reference_display)
        .or_else(|| r.get("recorder").and_then(reference_display))
        .or_else(|| r.get("requester").and_then(reference_display))
        .or_else(|| r.get("asserter").and_then(reference_display))
        .or_else(|| {
            first(r, "performer").and_then(|p| {
                reference_display(p).or_else(|| p.get("actor").and_then(reference_display))
            })
        })
        .or_else(|| {
            first(r, "participant")
                .and_then(|p| p.get("individual"))
                .and_then(reference_display)
        });

    Extracted {
        fhir_type,
        fhir_id,
        category,
        title,
        date,
        key_values,
        codes,
        author,
    }
}

/// Lower-case text the in-memory search matches against.
pub(crate) fn haystack(e: &Extracted) -> String {
    let mut h = String::with_capacity(128);
    h.push_str(&e.title);
    h.push('\n');
    h.push_str(&e.fhir_type);
    h.push('\n');
    h.push_str(e.category.as_str());
    for c in &e.codes {
        h.push('\n');
        h.push_str(&c.code);
        if let Some(d) = &c.display {
            h.push(' ');
            h.push_str(d);
        }
    }
    for kv in &e.key_values {
        h.push('\n');
        h.push_str(&kv.key);
        h.push(' ');
        h.push_str(&kv.value);
    }
    if let Some(a) = &e.author {
        h.push('\n');
        h.push_str(a);
    }
    h.to_lowercase()
}

/// One attachment taken out of a resource: where it was and its bytes.
#[derive(Debug)]
pub(crate) struct TakenAttachment {
    /// `content` index for DocumentReference, `u32::MAX` for Binary.data.
    pub slot: u32,
    pub content_type: Option<String>,
    pub title: Option<String>,
    pub data: zeroize::Zeroizing<Vec<u8>>,
}

/// Slot number used for `Binary.data`.
pub(crate) const BINARY_SLOT: u32 = u32::MAX;

fn b64_decode(t: &str) -> Option<Vec<u8>> {
    let cleaned: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    data_encoding::BASE64
        .decode(cleaned.as_bytes())
        .ok()
        .or_else(|| data_encoding::BASE64_NOPAD.decode(cleaned.as_bytes()).ok())
}

/// Removes inline base64 content (DocumentReference.content[].attachment.data, Binary.data)
/// from the resource and returns it; the resource keeps everything else.
pub(crate) fn take_attachments(
    r: &mut Value,
) -> std::result::Result<Vec<TakenAttachment>, &'static str> {
    let mut out = Vec::new();
    let ty = r.get("resourceType").and_then(s).unwrap_or("").to_owned();
    if ty == "Binary" {
        if let Some(Value::String(d)) = r.get("data") {
            let data = b64_decode(d).ok_or("Binary.data is not valid base64")?;
            let ct = r.get("contentType").and_then(s).map(str::to_owned);
            if let Some(o) = r.as_object_mut() {
                o.remove("data");
            }
            out.push(TakenAttachment {
                slot: BINARY_SLOT,
                content_type: ct,
                title: None,
                data: zeroize::Zeroizing::new(data),
            });
        }
    } else if let Some(Value::Array(content)) = r.get_mut("content") {
        for (i, c) in content.iter_mut().enumerate() {
            let Some(att) = c.get_mut("attachment").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(Value::String(d)) = att.get("data") else {
                continue;
            };
            let data = b64_decode(d).ok_or("attachment.data is not valid base64")?;
            att.remove("data");
            out.push(TakenAttachment {
                slot: u32::try_from(i).map_err(|_| "too many attachments")?,
                content_type: att.get("contentType").and_then(s).map(str::to_owned),
                title: att.get("title").and_then(s).map(str::to_owned),
                data: zeroize::Zeroizing::new(data),
            });
        }
    }
    Ok(out)
}

/// Puts attachment bytes back where [`take_attachments`] found them.
pub(crate) fn put_attachment(r: &mut Value, slot: u32, data: &[u8]) {
    let b64 = Value::String(data_encoding::BASE64.encode(data));
    if slot == BINARY_SLOT {
        if let Some(o) = r.as_object_mut() {
            o.insert("data".into(), b64);
        }
    } else if let Some(att) = r
        .get_mut("content")
        .and_then(|c| c.get_mut(slot as usize))
        .and_then(|c| c.get_mut("attachment"))
        .and_then(Value::as_object_mut)
    {
        att.insert("data".into(), b64);
    }
}

/// Checks a value is a FHIR resource object with a `resourceType`.
pub(crate) fn check_resource(v: &Value) -> std::result::Result<(), &'static str> {
    let Some(o) = v.as_object() else {
        return Err("not a JSON object");
    };
    match o.get("resourceType") {
        Some(Value::String(t)) if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(())
        }
        Some(_) => Err("resourceType is not a valid FHIR type name"),
        None => Err("missing resourceType"),
    }
}

fn json_reason(e: &serde_json::Error) -> String {
    // serde_json's messages name the category and column, never the input text.
    format!(
        "invalid JSON ({:?} error at column {})",
        e.classify(),
        e.column()
    )
}

/// One resource to import, with where it came from.
#[derive(Debug)]
pub(crate) struct Item {
    pub at: Position,
    pub resource: Value,
}

/// Parses a FHIR Bundle into items (entries without a resource are an error).
pub(crate) fn parse_bundle(json: &[u8]) -> Result<Vec<Item>> {
    let v: Value = serde_json::from_slice(json).map_err(|e| VaultError::Import {
        at: Position::Document,
        reason: format!(
            "invalid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    let doc_err = |reason: &str| VaultError::Import {
        at: Position::Document,
        reason: reason.to_owned(),
    };
    if v.get("resourceType").and_then(s) != Some("Bundle") {
        return Err(doc_err(
            "not a FHIR Bundle (resourceType is not \"Bundle\")",
        ));
    }
    let Value::Object(mut o) = v else {
        return Err(doc_err("not a JSON object"));
    };
    let entries = match o.remove("entry") {
        Some(Value::Array(a)) => a,
        None => Vec::new(),
        Some(_) => return Err(doc_err("Bundle.entry is not an array")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let Value::Object(mut eo) = e else {
            return Err(VaultError::Import {
                at: Position::Entry(i),
                reason: "entry is not a JSON object".into(),
            });
        };
        let Some(mut res) = eo.remove("resource") else {
            return Err(VaultError::Import {
                at: Position::Entry(i),
                reason: "entry has no resource".into(),
            });
        };
        check_resource(&res).map_err(|r| VaultError::Import {
            at: Position::Entry(i),
            reason: r.into(),
        })?;
        // An entry without a resource id keeps its fullUrl as its identity.
        if res.get("id").is_none()
            && let Some(Value::String(full)) = eo.get("fullUrl")
            && let Some(id) = full.rsplit([':', '/']).next()
            && let Some(obj) = res.as_object_mut()
        {
            obj.insert("id".into(), Value::String(id.to_owned()));
        }
        out.push(Item {
            at: Position::Entry(i),
            resource: res,
        });
    }
    Ok(out)
}

/// Checks parsed resources as [`parse_bundle`] checks its entries, each numbered as an entry.
pub(crate) fn items_of(resources: Vec<Value>) -> Result<Vec<Item>> {
    resources
        .into_iter()
        .enumerate()
        .map(|(i, resource)| {
            check_resource(&resource).map_err(|r| VaultError::Import {
                at: Position::Entry(i),
                reason: r.into(),
            })?;
            Ok(Item {
                at: Position::Entry(i),
                resource,
            })
        })
        .collect()
}

/// Parses one NDJSON file (blank lines allowed) into items.
pub(crate) fn parse_ndjson(file: &str, text: &[u8]) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let at = || Position::Line {
            file: file.to_owned(),
            line: line_no,
        };
        let v: Value = serde_json::from_slice(trimmed).map_err(|e| VaultError::Import {
            at: at(),
            reason: json_reason(&e),
        })?;
        check_resource(&v).map_err(|r| VaultError::Import {
            at: at(),
            reason: r.into(),
        })?;
        out.push(Item {
            at: at(),
            resource: v,
        });
    }
    Ok(out)
}

/// Builds a `collection` Bundle of resources.
pub(crate) fn make_bundle(resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let mut e = Map::new();
            if let (Some(t), Some(id)) =
                (r.get("resourceType").and_then(s), r.get("id").and_then(s))
            {
                e.insert("fullUrl".into(), Value::String(format!("{t}/{id}")));
            }
            e.insert("resource".into(), r);
            Value::Object(e)
        })
        .collect();
    let mut b = Map::new();
    b.insert("resourceType".into(), Value::String("Bundle".into()));
    b.insert("type".into(), Value::String("collection".into()));
    b.insert("entry".into(), Value::Array(entries));
    Value::Object(b)
}

/// A FHIR bulk-export NDJSON file handed to the importer.
#[derive(Debug, Clone)]
pub struct NdjsonFile {
    /// File name (used in error positions only).
    pub name: String,
    /// The file's bytes.
    pub data: Vec<u8>,
}

/// Resources of a bulk export, routed to patients by their subject/patient reference.
#[derive(Debug, Default)]
pub struct RoutedExport {
    /// Per patient id: its NDJSON lines (the Patient resource first), ready for one vault each.
    pub patients: BTreeMap<String, Vec<NdjsonFile>>,
    /// Resources that reference no patient (organisations, practitioners, locations): counted,
    /// not routed.
    pub unrouted: usize,
}

fn patient_ref(r: &Value) -> Option<String> {
    for k in ["subject", "patient", "beneficiary"] {
        if let Some(reference) = r.get(k).and_then(|x| x.get("reference")).and_then(s) {
            if let Some(id) = reference.strip_prefix("Patient/") {
                return Some(id.to_owned());
            }
            if let Some(id) = reference.strip_prefix("urn:uuid:") {
                return Some(id.to_owned());
            }
        }
    }
    None
}

/// Splits a bulk export (the files of one `$export`) into one NDJSON file per patient.
/// Malformed lines are reported with their file and line.
pub fn route_by_patient(files: &[NdjsonFile]) -> Result<RoutedExport> {
    let mut out = RoutedExport::default();
    let mut per: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for f in files {
        for item in parse_ndjson(&f.name, &f.data)? {
            let r = &item.resource;
            let pid = if r.get("resourceType").and_then(s) == Some("Patient") {
                r.get("id").and_then(s).map(str::to_owned)
            } else {
                patient_ref(r)
            };
            match pid {
                Some(p) => {
                    let buf = per.entry(p).or_default();
                    let line = serde_json::to_vec(r).map_err(|_| VaultError::Import {
                        at: item.at.clone(),
                        reason: "could not re-encode resource".into(),
                    })?;
                    if r.get("resourceType").and_then(s) == Some("Patient") {
                        let mut nb = line;
                        nb.push(b'\n');
                        nb.extend_from_slice(buf);
                        *buf = nb;
                    } else {
                        buf.extend_from_slice(&line);
                        buf.push(b'\n');
                    }
                }
                None => out.unrouted += 1,
            }
        }
    }
    for (n, (p, data)) in per.into_iter().enumerate() {
        out.patients.insert(
            p,
            vec![NdjsonFile {
                name: format!("patient-{n}.ndjson"),
                data,
            }],
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_by_subject_patient_and_urn() {
        let lines = [
            json!({"resourceType": "Patient", "id": "p1"}),
            json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}),
            json!({"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "urn:uuid:p2"}}),
            json!({"resourceType": "Organization", "id": "o1"}),
        ];
        let data = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let r = route_by_patient(&[NdjsonFile {
            name: "x.ndjson".into(),
            data: data.into_bytes(),
        }])
        .unwrap_or_default();
        assert_eq!(r.unrouted, 1);
        assert_eq!(r.patients.len(), 2);
        let p1 = String::from_utf8_lossy(&r.patients["p1"][0].data).into_owned();
        assert!(p1.starts_with("{\"id\":\"p1\"") || p1.contains("\"resourceType\":\"Patient\""));
        assert_eq!(p1.lines().count(), 2);
    }

    #[test]
    fn summaries_of_common_types() {
        let obs = json!({"resourceType": "Observation", "id": "o",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}]},
            "effectivePeriod": {"start": "2020-01-02"},
            "component": [{"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mmHg"}}],
            "performer": [{"display": "Dr. A"}]});
        let e = extract(&obs);
        assert_eq!(e.category, RecordGroup::Vitals);
        assert_eq!(e.title, "Blood pressure");
        assert_eq!(e.date.as_deref(), Some("2020-01-02"));
        assert_eq!(e.author.as_deref(), Some("Dr. A"));
        assert!(
            e.key_values
                .iter()
                .any(|kv| kv.key == "systolic" && kv.value == "120 mmHg")
        );
        let pat = json!({"resourceType": "Patient", "id": "p", "name": [{"given": ["Ann"], "family": "Lee"}]});
        assert_eq!(extract(&pat).title, "Ann Lee");
    }
}
