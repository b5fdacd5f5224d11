//! The doctor's chart summary: active problems, current medications, allergies, latest vitals.

use std::collections::HashMap;

use carekey_vault::{Record, RecordSummary};
use serde::Serialize;
use serde_json::Value;

use super::date::date_sort_key;
use super::json::{
    self, arr, code_in, concept_text, first, has_code, quantity, reference_display, resource_date,
    status_code, str_at, with_unit,
};
use super::timeline::newest_first;

pub(crate) const LOINC: &str = "http://loinc.org";

/// A vital sign the chart shows, recognised by its LOINC code (or, failing that, its
/// `code.text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VitalKind {
    /// Heart rate (LOINC 8867-4).
    HeartRate,
    /// Blood pressure: panel 85354-9 with systolic 8480-6 and diastolic 8462-4 components.
    BloodPressure,
    /// Body temperature (8310-5).
    Temperature,
    /// Body weight (29463-7).
    Weight,
    /// Body height (8302-2).
    Height,
    /// Body mass index (39156-5).
    Bmi,
    /// Respiratory rate (9279-1).
    RespiratoryRate,
    /// Oxygen saturation (59408-5, 2708-6).
    OxygenSaturation,
}

impl VitalKind {
    /// Every kind, in the order the chart lists them.
    pub const ALL: [VitalKind; 8] = [
        VitalKind::BloodPressure,
        VitalKind::HeartRate,
        VitalKind::RespiratoryRate,
        VitalKind::Temperature,
        VitalKind::OxygenSaturation,
        VitalKind::Weight,
        VitalKind::Height,
        VitalKind::Bmi,
    ];

    /// The kind's main LOINC code.
    pub fn loinc(self) -> &'static str {
        match self {
            VitalKind::HeartRate => "8867-4",
            VitalKind::BloodPressure => "85354-9",
            VitalKind::Temperature => "8310-5",
            VitalKind::Weight => "29463-7",
            VitalKind::Height => "8302-2",
            VitalKind::Bmi => "39156-5",
            VitalKind::RespiratoryRate => "9279-1",
            VitalKind::OxygenSaturation => "59408-5",
        }
    }

    /// What the chart calls it.
    pub fn label(self) -> &'static str {
        match self {
            VitalKind::HeartRate => "Heart rate",
            VitalKind::BloodPressure => "Blood pressure",
            VitalKind::Temperature => "Temperature",
            VitalKind::Weight => "Weight",
            VitalKind::Height => "Height",
            VitalKind::Bmi => "BMI",
            VitalKind::RespiratoryRate => "Respiratory rate",
            VitalKind::OxygenSaturation => "Oxygen saturation",
        }
    }

    /// Stable snake_case name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            VitalKind::HeartRate => "heart_rate",
            VitalKind::BloodPressure => "blood_pressure",
            VitalKind::Temperature => "temperature",
            VitalKind::Weight => "weight",
            VitalKind::Height => "height",
            VitalKind::Bmi => "bmi",
            VitalKind::RespiratoryRate => "respiratory_rate",
            VitalKind::OxygenSaturation => "oxygen_saturation",
        }
    }
}

/// Systolic and diastolic blood pressure codes.
pub(crate) const SYSTOLIC: &str = "8480-6";
pub(crate) const DIASTOLIC: &str = "8462-4";

fn kind_of_code(code: &str) -> Option<VitalKind> {
    Some(match code {
        "8867-4" => VitalKind::HeartRate,
        "85354-9" | "55284-4" | SYSTOLIC | DIASTOLIC => VitalKind::BloodPressure,
        "8310-5" | "8331-1" => VitalKind::Temperature,
        "29463-7" | "3141-9" => VitalKind::Weight,
        "8302-2" | "8306-3" => VitalKind::Height,
        "39156-5" => VitalKind::Bmi,
        "9279-1" => VitalKind::RespiratoryRate,
        "59408-5" | "2708-6" => VitalKind::OxygenSaturation,
        _ => return None,
    })
}

fn kind_of_text(t: &str) -> Option<VitalKind> {
    let t = t.to_lowercase();
    let has = |w: &str| t.contains(w);
    Some(
        if has("blood pressure") || has("systolic") || has("diastolic") {
            VitalKind::BloodPressure
        } else if has("heart rate") || has("pulse rate") || t == "pulse" {
            VitalKind::HeartRate
        } else if has("respiratory rate") || has("respiration rate") {
            VitalKind::RespiratoryRate
        } else if has("oxygen saturation") || has("spo2") {
            VitalKind::OxygenSaturation
        } else if has("body mass index") || t == "bmi" || has("bmi ") {
            VitalKind::Bmi
        } else if has("temperature") {
            VitalKind::Temperature
        } else if has("body weight") || t == "weight" {
            VitalKind::Weight
        } else if has("body height") || t == "height" {
            VitalKind::Height
        } else {
            return None;
        },
    )
}

/// The vital kind of an Observation's `code` (LOINC codes first, then `code.text`).
pub(crate) fn vital_kind(obs: &Value) -> Option<VitalKind> {
    let code = obs.get("code")?;
    json::codings(code)
        .iter()
        .filter(|c| str_at(c, "system").is_none_or(|s| s == LOINC))
        .find_map(|c| str_at(c, "code").and_then(kind_of_code))
        .or_else(|| str_at(code, "text").and_then(kind_of_text))
}

/// Whether an Observation is in the vital-signs category.
pub(crate) fn is_vital_category(obs: &Value) -> bool {
    arr(obs, "category")
        .iter()
        .any(|c| has_code(c, None, &["vital-signs"]))
}

/// Statuses whose resources are not shown as current facts.
pub(crate) fn entered_in_error(r: &Value) -> bool {
    matches!(
        status_code(r.get("status")).as_deref(),
        Some("entered-in-error" | "cancelled")
    ) || matches!(
        status_code(r.get("verificationStatus")).as_deref(),
        Some("entered-in-error" | "refuted")
    )
}

/// A problem on the chart: a Condition that is active (or recurring, relapsed, or without a
/// clinical status).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemRow {
    /// Record id (hex).
    pub id: String,
    /// What the problem is (`code`).
    pub title: String,
    /// Clinical status code (`active`, `recurrence`, `relapse`), `None` when the resource has
    /// none.
    pub clinical_status: Option<String>,
    /// Verification status code (`confirmed`, `provisional`…).
    pub verification_status: Option<String>,
    /// Severity text.
    pub severity: Option<String>,
    /// Onset (or recorded) date text.
    pub onset: Option<String>,
    /// Unix seconds of `onset`.
    pub sort_key: Option<i64>,
}

/// A current medication: a MedicationStatement or MedicationRequest whose status is `active`
/// (or missing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MedicationRow {
    /// Record id (hex).
    pub id: String,
    /// `MedicationStatement` or `MedicationRequest`.
    pub fhir_type: String,
    /// The medicine: `medicationCodeableConcept`, else the referenced Medication's code (when
    /// that Medication is among the records), else the reference's display.
    pub title: String,
    /// Status code, `None` when the resource has none.
    pub status: Option<String>,
    /// Dosage text (`dosage[0].text` / `dosageInstruction[0].text`, else built from the dose,
    /// timing and route).
    pub dosage: Option<String>,
    /// Start / authored date text.
    pub date: Option<String>,
    /// Unix seconds of `date`.
    pub sort_key: Option<i64>,
}

/// An allergy or intolerance on the chart (all but inactive, resolved or refuted ones).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllergyRow {
    /// Record id (hex).
    pub id: String,
    /// The substance (`code`).
    pub title: String,
    /// `low`, `high` or `unable-to-assess`.
    pub criticality: Option<String>,
    /// Clinical status code.
    pub clinical_status: Option<String>,
    /// `food`, `medication`, `environment`, `biologic` (joined with ", ").
    pub category: Option<String>,
    /// `allergy` or `intolerance`.
    pub allergy_type: Option<String>,
    /// Reaction manifestations.
    pub reactions: Vec<String>,
    /// Onset date text.
    pub onset: Option<String>,
}

/// One component of a vital (systolic, diastolic).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentValue {
    /// The component's name (`code` text, or "systolic" / "diastolic").
    pub name: String,
    /// Its LOINC (or first) code.
    pub code: Option<String>,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: Option<String>,
}

/// The latest value of one vital sign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VitalRow {
    /// Which vital.
    pub kind: VitalKind,
    /// Its name on the chart.
    pub label: String,
    /// The Observation's record id (hex).
    pub id: String,
    /// The Observation's LOINC (or first) code.
    pub code: Option<String>,
    /// The value (`None` for a blood-pressure panel: see `components`).
    pub value: Option<f64>,
    /// Its unit.
    pub unit: Option<String>,
    /// Ready to show: "72 /min", "120/80 mmHg".
    pub value_text: String,
    /// Components (systolic, diastolic).
    pub components: Vec<ComponentValue>,
    /// Date text.
    pub date: Option<String>,
    /// Unix seconds of `date`.
    pub sort_key: Option<i64>,
}

/// What the doctor sees first about a patient.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChartSummary {
    /// Active problems, newest onset first.
    pub problems: Vec<ProblemRow>,
    /// Current medications, newest first.
    pub medications: Vec<MedicationRow>,
    /// Allergies and intolerances, high criticality first.
    pub allergies: Vec<AllergyRow>,
    /// The latest value of each vital sign present, in [`VitalKind::ALL`] order.
    pub vitals: Vec<VitalRow>,
}

fn ty(r: &Record) -> &str {
    str_at(&r.resource, "resourceType").unwrap_or(&r.summary.fhir_type)
}

fn date_of(r: &Value) -> (Option<String>, Option<i64>) {
    let d = resource_date(r).and_then(json::text);
    let k = d.as_deref().and_then(date_sort_key);
    (d, k)
}

fn problem(rec: &Record) -> Option<ProblemRow> {
    let r = &rec.resource;
    let clinical = status_code(r.get("clinicalStatus"));
    if !matches!(
        clinical.as_deref(),
        None | Some("active" | "recurrence" | "relapse")
    ) || entered_in_error(r)
    {
        return None;
    }
    let onset = ["onsetDateTime", "recordedDate", "onsetString"]
        .iter()
        .find_map(|k| str_at(r, k))
        .or_else(|| r.get("onsetPeriod").and_then(|p| str_at(p, "start")))
        .and_then(json::text);
    Some(ProblemRow {
        id: rec.summary.id.to_string(),
        title: json::title(
            &r.get("code")
                .and_then(concept_text)
                .unwrap_or_else(|| rec.summary.title.clone()),
            "Problem",
        ),
        clinical_status: clinical,
        verification_status: status_code(r.get("verificationStatus")),
        severity: r.get("severity").and_then(concept_text),
        sort_key: onset.as_deref().and_then(date_sort_key),
        onset,
    })
}

fn dosage_text(d: &Value) -> Option<String> {
    if let Value::String(s) = d {
        return json::text(s);
    }
    if let Some(t) = str_at(d, "text").and_then(json::text) {
        return Some(t);
    }
    let mut parts = Vec::new();
    if let Some((v, u)) = first(d, "doseAndRate")
        .and_then(|dr| dr.get("doseQuantity"))
        .and_then(quantity)
    {
        parts.push(with_unit(v, u.as_deref()));
    }
    if let Some(rep) = d.get("timing").and_then(|t| t.get("repeat")) {
        let freq = rep.get("frequency").and_then(json::number);
        let period = rep.get("period").and_then(json::number);
        let unit = str_at(rep, "periodUnit");
        if let (Some(f), Some(p), Some(u)) = (freq, period, unit) {
            let per = if p == 1.0 {
                u.to_owned()
            } else {
                format!("{} {u}", json::fmt_num(p))
            };
            parts.push(format!("{}× per {per}", json::fmt_num(f)));
        }
    }
    if let Some(route) = d.get("route").and_then(concept_text) {
        parts.push(route);
    }
    if d.get("asNeededBoolean").and_then(Value::as_bool) == Some(true) {
        parts.push("as needed".to_owned());
    }
    json::text(&parts.join(", "))
}

fn medication(rec: &Record, meds: &HashMap<&str, &Value>) -> Option<MedicationRow> {
    let r = &rec.resource;
    let status = status_code(r.get("status"));
    if !matches!(status.as_deref(), None | Some("active")) {
        return None;
    }
    let referenced = || {
        let reference = r.get("medicationReference")?;
        let target = str_at(reference, "reference")?;
        let id = target.rsplit([':', '/']).next()?;
        meds.get(id)
            .and_then(|m| m.get("code"))
            .and_then(concept_text)
    };
    let title = r
        .get("medicationCodeableConcept")
        .and_then(concept_text)
        .or_else(referenced)
        .or_else(|| r.get("medicationReference").and_then(reference_display))
        .unwrap_or_else(|| rec.summary.title.clone());
    let dosage = first(r, "dosage")
        .or_else(|| first(r, "dosageInstruction"))
        .and_then(dosage_text);
    let (date, sort_key) = date_of(r);
    Some(MedicationRow {
        id: rec.summary.id.to_string(),
        fhir_type: ty(rec).to_owned(),
        title: json::title(&title, "Medication"),
        status,
        dosage,
        date,
        sort_key,
    })
}

fn allergy(rec: &Record) -> Option<AllergyRow> {
    let r = &rec.resource;
    let clinical = status_code(r.get("clinicalStatus"));
    if matches!(clinical.as_deref(), Some("inactive" | "resolved")) || entered_in_error(r) {
        return None;
    }
    let category = match r.get("category") {
        Some(Value::Array(a)) => {
            let v: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            json::text(&v.join(", "))
        }
        Some(Value::String(s)) => json::text(s),
        _ => None,
    };
    let mut reactions = Vec::new();
    for re in arr(r, "reaction") {
        for m in arr(re, "manifestation") {
            if let Some(t) = concept_text(m)
                && !reactions.contains(&t)
                && reactions.len() < 20
            {
                reactions.push(t);
            }
        }
    }
    Some(AllergyRow {
        id: rec.summary.id.to_string(),
        title: json::title(
            &r.get("code")
                .and_then(concept_text)
                .unwrap_or_else(|| rec.summary.title.clone()),
            "Allergy",
        ),
        criticality: str_at(r, "criticality").and_then(json::text),
        clinical_status: clinical,
        category,
        allergy_type: str_at(r, "type").and_then(json::text),
        reactions,
        onset: ["onsetDateTime", "recordedDate", "onsetString"]
            .iter()
            .find_map(|k| str_at(r, k))
            .and_then(json::text),
    })
}

/// Name of a blood-pressure component.
pub(crate) fn component_name(c: &Value) -> String {
    let code = c.get("code");
    if code.is_some_and(|k| has_code(k, Some(LOINC), &[SYSTOLIC])) {
        return "systolic".to_owned();
    }
    if code.is_some_and(|k| has_code(k, Some(LOINC), &[DIASTOLIC])) {
        return "diastolic".to_owned();
    }
    code.and_then(concept_text)
        .unwrap_or_else(|| "component".to_owned())
}

/// The numeric components of an Observation.
pub(crate) fn components(obs: &Value) -> Vec<ComponentValue> {
    arr(obs, "component")
        .iter()
        .filter_map(|c| {
            let (value, unit) = c.get("valueQuantity").and_then(quantity)?;
            let code = c.get("code");
            Some(ComponentValue {
                name: json::title(&component_name(c), "component"),
                code: code
                    .and_then(|k| code_in(k, Some(LOINC)).or_else(|| code_in(k, None)))
                    .and_then(json::text),
                value,
                unit,
            })
        })
        .collect()
}

fn vital(rec: &Record, kind: VitalKind) -> Option<VitalRow> {
    let r = &rec.resource;
    let code = r.get("code");
    let own_code = code
        .and_then(|k| code_in(k, Some(LOINC)).or_else(|| code_in(k, None)))
        .and_then(json::text);
    let q = r.get("valueQuantity").and_then(quantity);
    let mut comps = components(r);
    if kind == VitalKind::BloodPressure && comps.is_empty() {
        // A lone systolic or diastolic Observation: show it as that component.
        if let Some((value, unit)) = q.clone() {
            let name = if code.is_some_and(|k| has_code(k, Some(LOINC), &[DIASTOLIC])) {
                "diastolic"
            } else if code.is_some_and(|k| has_code(k, Some(LOINC), &[SYSTOLIC])) {
                "systolic"
            } else {
                "blood pressure"
            };
            comps.push(ComponentValue {
                name: name.to_owned(),
                code: own_code.clone(),
                value,
                unit,
            });
        }
    }
    if kind == VitalKind::BloodPressure {
        // Systolic before diastolic, whatever the resource's order.
        comps.sort_by_key(|c| match c.name.as_str() {
            "systolic" => 0,
            "diastolic" => 1,
            _ => 2,
        });
    }
    let (value, unit) = match (&q, kind) {
        (Some((v, u)), k) if k != VitalKind::BloodPressure => (Some(*v), u.clone()),
        _ => (None, comps.first().and_then(|c| c.unit.clone())),
    };
    let value_text = match value {
        Some(v) => with_unit(v, unit.as_deref()),
        None if !comps.is_empty() => {
            let nums: Vec<String> = comps.iter().map(|c| json::fmt_num(c.value)).collect();
            let mut t = nums.join("/");
            if let Some(u) = &unit {
                t.push(' ');
                t.push_str(u);
            }
            if comps.len() == 1
                && let Some(c) = comps.first()
            {
                t.push_str(&format!(" ({})", c.name));
            }
            t
        }
        None => return None,
    };
    let (date, sort_key) = date_of(r);
    Some(VitalRow {
        kind,
        label: kind.label().to_owned(),
        id: rec.summary.id.to_string(),
        code: own_code,
        value,
        unit,
        value_text: json::clip(&value_text, json::MAX_TEXT_CHARS),
        components: comps,
        date,
        sort_key,
    })
}

/// Whether the chart's views of whole records ([`chart_summary`], `lab_table`,
/// `vitals_series`, `documents`) read this record: the resource types they look at, and any
/// record with files. The doctor's chart opens only these (of the largest Synthea patient's
/// 3,489 records, 1,526 encounters, procedures, immunizations and devices are shown from
/// their summaries alone); a test checks that those views come out the same either way.
pub fn chart_reads_record(s: &RecordSummary) -> bool {
    matches!(
        s.fhir_type.as_str(),
        "Condition"
            | "Medication"
            | "MedicationStatement"
            | "MedicationRequest"
            | "AllergyIntolerance"
            | "Observation"
            | "DocumentReference"
            | "Media"
            | "Binary"
            | "DiagnosticReport"
    ) || !s.attachments.is_empty()
}

/// The chart summary of a patient's records (any mix of resource types; the others are
/// ignored).
pub fn chart_summary(records: &[Record]) -> ChartSummary {
    let meds: HashMap<&str, &Value> = records
        .iter()
        .filter(|r| ty(r) == "Medication")
        .filter_map(|r| Some((str_at(&r.resource, "id")?, &r.resource)))
        .collect();
    let mut out = ChartSummary::default();
    let mut latest: HashMap<VitalKind, VitalRow> = HashMap::new();
    for rec in records {
        match ty(rec) {
            "Condition" => out.problems.extend(problem(rec)),
            "MedicationStatement" | "MedicationRequest" => {
                out.medications.extend(medication(rec, &meds));
            }
            "AllergyIntolerance" => out.allergies.extend(allergy(rec)),
            "Observation" if !entered_in_error(&rec.resource) => {
                if let Some(kind) = vital_kind(&rec.resource)
                    && let Some(row) = vital(rec, kind)
                {
                    let newer = latest.get(&kind).is_none_or(|cur| {
                        newest_first(row.sort_key, cur.sort_key) == std::cmp::Ordering::Less
                    });
                    if newer {
                        latest.insert(kind, row);
                    }
                }
            }
            _ => {}
        }
    }
    out.problems
        .sort_by(|a, b| newest_first(a.sort_key, b.sort_key));
    out.medications
        .sort_by(|a, b| newest_first(a.sort_key, b.sort_key));
    out.allergies
        .sort_by_key(|a| match a.criticality.as_deref() {
            Some("high") => 0,
            Some("unable-to-assess") => 1,
            Some("low") => 2,
            _ => 3,
        });
    out.vitals = VitalKind::ALL
        .iter()
        .filter_map(|k| latest.remove(k))
        .collect();
    out
}
