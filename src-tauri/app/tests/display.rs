//! Display rows (`carekey_app::display`) from real vaults: the HL7 IPS bundle and every Synthea
//! patient of `$CAREKEY_FIXTURES` (default `../shared/fixtures` from the repo root), plus
//! synthetic resources for what the fixtures lack (blood pressure, reference ranges, unknown
//! types, malformed fields, attachments of every kind).
//!
//! Fixture tests print "skipped: CAREKEY_FIXTURES not found" and pass when the fixtures are
//! absent, unless `CAREKEY_REQUIRE_FIXTURES` is set (then they fail).
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use carekey_app::display::{
    self, CATEGORY_ORDER, DocKind, Interpretation, MAX_TITLE_CHARS, Provenance, VitalKind,
    category_counts, chart_summary, date_sort_key, documents, lab_table, timeline_rows,
    vitals_series,
};
use carekey_vault::{
    CreateOptions, ImportControl, ImportOptions, ImportReport, KdfParams, NdjsonFile, Origin,
    Record, RecordGroup, RecordId, RecordSummary, SignatureStatus, Vault, route_by_patient,
};
use serde_json::{Value, json};

// ------------------------------------------------------------------ helpers

fn fixtures(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CAREKEY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    if dir.join(what).exists() {
        return Some(dir);
    }
    let required =
        std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "CAREKEY_REQUIRE_FIXTURES is set but {} is missing",
        dir.join(what).display()
    );
    println!(
        "skipped: CAREKEY_FIXTURES not found ({} missing)",
        dir.join(what).display()
    );
    None
}

fn new_vault(dir: &tempfile::TempDir, name: &str) -> Vault {
    Vault::create(
        &dir.path().join(name),
        "display test passphrase",
        &CreateOptions {
            kdf: KdfParams::INSECURE_TEST,
        },
    )
    .expect("vault is created")
    .0
}

fn import_opts(source: &str) -> ImportOptions {
    ImportOptions {
        source: Some(source.to_owned()),
        share: None,
    }
}

/// Every summary of the vault and every full record, in listing order.
fn load(vault: &mut Vault) -> (Vec<RecordSummary>, Vec<Record>) {
    let listing = vault.list().expect("lists");
    assert!(listing.damaged.is_empty(), "no damaged rows");
    let records = listing
        .records
        .iter()
        .map(|s| vault.get_record(&s.id).expect("record opens"))
        .collect();
    (listing.records, records)
}

/// A vault holding `resources` (imported as one bundle), its summaries and records.
fn vault_with(
    resources: Vec<Value>,
) -> (tempfile::TempDir, Vault, Vec<RecordSummary>, Vec<Record>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut vault = new_vault(&dir, "v.sqlite");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
    });
    vault
        .import_bundle(
            &serde_json::to_vec(&bundle).expect("bundle encodes"),
            &import_opts("test bundle"),
            &mut ImportControl::default(),
        )
        .expect("bundle imports");
    let (summaries, records) = load(&mut vault);
    (dir, vault, summaries, records)
}

fn record_by_fhir_id<'a>(records: &'a [Record], fhir_id: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r.summary.fhir_id == fhir_id)
        .unwrap_or_else(|| panic!("record {fhir_id} is in the vault"))
}

/// Newest first, undated last.
fn assert_newest_first(keys: &[Option<i64>], what: &str) {
    for w in keys.windows(2) {
        match (w[0], w[1]) {
            (Some(a), Some(b)) => assert!(a >= b, "{what}: {a} before {b}"),
            (None, Some(_)) => panic!("{what}: an undated row before a dated one"),
            _ => {}
        }
    }
}

/// Independent reading of the raw JSON: the first code of a CodeableConcept's codings.
fn raw_code(v: Option<&Value>) -> Option<&str> {
    v?.get("coding")?.as_array()?.first()?.get("code")?.as_str()
}

fn raw_concept_text(v: &Value) -> Option<String> {
    if let Some(t) = v.get("text").and_then(Value::as_str) {
        return Some(t.to_owned());
    }
    let cs = v.get("coding")?.as_array()?;
    cs.iter()
        .find_map(|c| c.get("display").and_then(Value::as_str))
        .or_else(|| {
            cs.iter()
                .find_map(|c| c.get("code").and_then(Value::as_str))
        })
        .map(str::to_owned)
}

fn raw_is_active_problem(r: &Value) -> bool {
    matches!(
        raw_code(r.get("clinicalStatus")),
        None | Some("active" | "recurrence" | "relapse")
    ) && !matches!(
        raw_code(r.get("verificationStatus")),
        Some("entered-in-error" | "refuted")
    )
}

fn raw_is_current_med(r: &Value) -> bool {
    matches!(
        r.get("status").and_then(Value::as_str),
        None | Some("active")
    )
}

fn raw_is_listed_allergy(r: &Value) -> bool {
    !matches!(
        raw_code(r.get("clinicalStatus")),
        Some("inactive" | "resolved")
    ) && !matches!(
        raw_code(r.get("verificationStatus")),
        Some("entered-in-error" | "refuted")
    )
}

fn raw_is_vital(r: &Value) -> bool {
    r.get("category")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("coding")
                    .and_then(Value::as_array)
                    .is_some_and(|x| x.iter().any(|y| y["code"] == "vital-signs"))
            })
        })
}

fn ty(r: &Value) -> &str {
    r.get("resourceType").and_then(Value::as_str).unwrap_or("")
}

// ------------------------------------------------------------------ IPS bundle

#[test]
fn ips_chart_summary_matches_raw_json() {
    let Some(fx) = fixtures("fhir/ips-bundle-01.json") else {
        return;
    };
    let bytes = std::fs::read(fx.join("fhir/ips-bundle-01.json")).expect("IPS reads");
    let raw: Value = serde_json::from_slice(&bytes).expect("IPS is JSON");
    let resources: Vec<&Value> = raw["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .collect();

    let dir = tempfile::tempdir().expect("dir");
    let mut vault = new_vault(&dir, "ips.sqlite");
    vault
        .import_bundle(
            &bytes,
            &import_opts("ips-bundle-01.json"),
            &mut ImportControl::default(),
        )
        .expect("IPS imports");
    let (summaries, records) = load(&mut vault);
    assert_eq!(records.len(), resources.len());

    let chart = chart_summary(&records);
    let want_problems = resources
        .iter()
        .filter(|r| ty(r) == "Condition" && raw_is_active_problem(r))
        .count();
    let want_meds: Vec<&&Value> = resources
        .iter()
        .filter(|r| {
            matches!(ty(r), "MedicationStatement" | "MedicationRequest") && raw_is_current_med(r)
        })
        .collect();
    let want_allergies = resources
        .iter()
        .filter(|r| ty(r) == "AllergyIntolerance" && raw_is_listed_allergy(r))
        .count();
    assert!(want_problems > 0 && !want_meds.is_empty() && want_allergies > 0);
    assert_eq!(chart.problems.len(), want_problems, "active problems");
    assert_eq!(
        chart.medications.len(),
        want_meds.len(),
        "current medications"
    );
    assert_eq!(chart.allergies.len(), want_allergies, "allergies");
    // The resolved / remission condition is not on the chart.
    let inactive: Vec<String> = resources
        .iter()
        .filter(|r| ty(r) == "Condition" && !raw_is_active_problem(r))
        .filter_map(|r| raw_concept_text(&r["code"]))
        .collect();
    for p in &chart.problems {
        assert!(
            !inactive.contains(&p.title),
            "inactive problem {} listed",
            p.title
        );
        assert!(!p.title.is_empty());
    }
    // Medication titles come from the referenced Medication resources.
    let med_names: HashMap<&str, String> = resources
        .iter()
        .filter(|r| ty(r) == "Medication")
        .filter_map(|r| Some((r["id"].as_str()?, raw_concept_text(&r["code"])?)))
        .collect();
    for m in &want_meds {
        let rec = record_by_fhir_id(&records, m["id"].as_str().expect("id"));
        let row = chart
            .medications
            .iter()
            .find(|row| row.id == rec.summary.id.to_string())
            .expect("medication row");
        if let Some(target) = m["medicationReference"]["reference"].as_str()
            && let Some(name) = target
                .strip_prefix("Medication/")
                .and_then(|id| med_names.get(id))
        {
            assert_eq!(
                &row.title, name,
                "medication resolved through its reference"
            );
        }
        assert_eq!(row.status.as_deref(), m["status"].as_str());
    }
    // Criticality carried; high first.
    let crit: Vec<Option<&str>> = chart
        .allergies
        .iter()
        .map(|a| a.criticality.as_deref())
        .collect();
    let raw_high = resources
        .iter()
        .filter(|r| ty(r) == "AllergyIntolerance" && r["criticality"] == "high")
        .count();
    assert_eq!(
        crit.iter().filter(|c| **c == Some("high")).count(),
        raw_high
    );
    if raw_high > 0 {
        assert_eq!(crit.first().copied().flatten(), Some("high"));
    }

    // Timeline: every record, counts per category as the vault has them.
    let rows = timeline_rows(&summaries);
    assert_eq!(rows.len(), vault.record_count().expect("count"));
    assert_newest_first(
        &rows.iter().map(|r| r.sort_key).collect::<Vec<_>>(),
        "IPS timeline",
    );
    for r in &rows {
        assert_eq!(
            r.provenance,
            Provenance::ImportedUnsigned {
                source: "ips-bundle-01.json".into()
            }
        );
        assert_eq!(r.provenance_label, "imported, unsigned");
    }
    assert_category_counts(&summaries);
}

#[test]
fn ips_lab_rows_carry_value_unit_range() {
    let Some(fx) = fixtures("fhir/ips-bundle-01.json") else {
        return;
    };
    let bytes = std::fs::read(fx.join("fhir/ips-bundle-01.json")).expect("IPS reads");
    let raw: Value = serde_json::from_slice(&bytes).expect("IPS is JSON");
    let observations: Vec<&Value> = raw["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| ty(r) == "Observation")
        .collect();
    assert!(!observations.is_empty());

    let dir = tempfile::tempdir().expect("dir");
    let mut vault = new_vault(&dir, "ips.sqlite");
    vault
        .import_bundle(&bytes, &import_opts("ips"), &mut ImportControl::default())
        .expect("IPS imports");
    let (_, records) = load(&mut vault);
    let labs = lab_table(&records);
    let series = vitals_series(&records);
    let labs_expected = observations.iter().filter(|o| !raw_is_vital(o)).count();
    assert_eq!(
        labs.len(),
        labs_expected,
        "every non-vital Observation has a lab row"
    );
    assert_newest_first(&labs.iter().map(|r| r.sort_key).collect::<Vec<_>>(), "labs");

    let mut with_quantity = 0;
    for o in &observations {
        if raw_is_vital(o) {
            continue;
        }
        let rec = record_by_fhir_id(&records, o["id"].as_str().expect("id"));
        let row = labs
            .iter()
            .find(|r| r.id == rec.summary.id.to_string())
            .expect("lab row");
        if let Some(q) = o.get("valueQuantity") {
            with_quantity += 1;
            assert_eq!(row.value, q["value"].as_f64(), "value of {}", row.title);
            assert_eq!(
                row.unit.as_deref(),
                q["unit"].as_str().or(q["code"].as_str())
            );
            assert!(
                row.value_text
                    .as_deref()
                    .is_some_and(|t| t.contains(&row.unit.clone().unwrap_or_default()))
            );
        } else if let Some(c) = o.get("valueCodeableConcept") {
            assert_eq!(row.value, None);
            assert_eq!(
                row.value_text,
                raw_concept_text(c),
                "coded value kept as text"
            );
        } else if let Some(s) = o.get("valueString").and_then(Value::as_str) {
            assert_eq!(row.value_text.as_deref(), Some(s));
        } else if let Some(m) = o.get("hasMember").and_then(Value::as_array) {
            assert_eq!(row.members, m.len(), "panel keeps its members");
        }
        match o.get("referenceRange").and_then(|r| r.get(0)) {
            Some(rr) => {
                let got = row.reference_range.as_ref().expect("range carried");
                assert_eq!(got.low, rr["low"]["value"].as_f64());
                assert_eq!(got.high, rr["high"]["value"].as_f64());
                if let Some(t) = rr["text"].as_str() {
                    assert_eq!(got.text.as_deref(), Some(t));
                }
            }
            None => assert_eq!(row.reference_range, None),
        }
        if let Some(code) = o["code"]["coding"][0]["code"].as_str() {
            assert_eq!(row.code.as_deref(), Some(code));
        }
    }
    assert!(with_quantity > 0, "the IPS has a quantity result");

    // Blood pressure, if the bundle has one, is one chart with two lines.
    let has_bp = observations.iter().any(|o| {
        o["code"]["coding"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x["code"] == "85354-9"))
    });
    if has_bp {
        let bp = series
            .iter()
            .find(|s| s.kind == Some(VitalKind::BloodPressure))
            .expect("BP chart");
        assert_eq!(bp.lines.len(), 2);
    } else {
        println!(
            "note: the IPS bundle has no blood pressure (covered by blood_pressure_is_two_lines_of_one_chart)"
        );
    }
}

// ------------------------------------------------------------------ Synthea

fn synthea_files(fx: &Path) -> Vec<NdjsonFile> {
    let mut files: Vec<NdjsonFile> = std::fs::read_dir(fx.join("synthea-10"))
        .expect("synthea dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "ndjson")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("log"))
        })
        .map(|p| NdjsonFile {
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            data: std::fs::read(&p).expect("ndjson reads"),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn assert_category_counts(summaries: &[RecordSummary]) {
    let mut tally: BTreeMap<RecordGroup, usize> = BTreeMap::new();
    for s in summaries {
        *tally.entry(s.category).or_default() += 1;
    }
    let counts = category_counts(summaries);
    assert_eq!(counts.len(), CATEGORY_ORDER.len(), "every category listed");
    for (c, want) in counts.iter().zip(CATEGORY_ORDER) {
        assert_eq!(c.category, want, "fixed UI order");
        assert_eq!(
            c.count,
            tally.get(&want).copied().unwrap_or(0),
            "{}",
            want.as_str()
        );
    }
    assert_eq!(
        counts.iter().map(|c| c.count).sum::<usize>(),
        summaries.len()
    );
}

#[test]
fn synthea_every_patient_rows_match_the_vault() {
    let Some(fx) = fixtures("synthea-10") else {
        return;
    };
    let files = synthea_files(&fx);
    let total_lines: usize = files
        .iter()
        .map(|f| {
            f.data
                .split(|b| *b == b'\n')
                .filter(|l| !l.trim_ascii().is_empty())
                .count()
        })
        .sum();
    let routed = route_by_patient(&files).expect("routes");
    assert!(routed.patients.len() >= 10, "ten patients");
    let dir = tempfile::tempdir().expect("dir");
    let mut total_rows = 0;
    for (n, (pid, files)) in routed.patients.iter().enumerate() {
        // Independent reading of this patient's lines.
        let raw: Vec<Value> = files
            .iter()
            .flat_map(|f| f.data.split(|b| *b == b'\n'))
            .filter(|l| !l.trim_ascii().is_empty())
            .map(|l| serde_json::from_slice(l).expect("line is JSON"))
            .collect();

        let mut vault = new_vault(&dir, &format!("p{n}.sqlite"));
        let report: ImportReport = vault
            .import_ndjson(
                files,
                &import_opts("Synthea export"),
                &mut ImportControl::default(),
            )
            .expect("patient imports");
        assert_eq!(report.records, raw.len());
        let (summaries, records) = load(&mut vault);
        let count = vault.record_count().expect("count");

        // Timeline: one row per record, newest first, provenance from the import.
        let rows = timeline_rows(&summaries);
        assert_eq!(
            rows.len(),
            count,
            "patient {pid}: timeline rows == vault records"
        );
        assert_eq!(rows.len(), summaries.len());
        assert_newest_first(&rows.iter().map(|r| r.sort_key).collect::<Vec<_>>(), pid);
        let dated = rows.iter().filter(|r| r.date.is_some()).count();
        assert_eq!(
            rows.iter().filter(|r| r.sort_key.is_some()).count(),
            dated,
            "every Synthea date parses"
        );
        let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
        for r in &rows {
            *by_type.entry(r.fhir_type.clone()).or_default() += 1;
            assert_eq!(r.provenance_label, "imported, unsigned");
            assert!(!r.title.is_empty() && r.title.chars().count() <= MAX_TITLE_CHARS);
            assert_eq!(r.id.len(), 64);
        }
        if report.replaced == 0 {
            assert_eq!(
                by_type, report.by_type,
                "patient {pid}: rows per type == import report"
            );
        }
        let with_atts: usize = rows.iter().map(|r| r.attachments).sum();
        assert_eq!(
            with_atts,
            summaries.iter().map(|s| s.attachments.len()).sum::<usize>()
        );
        assert_category_counts(&summaries);

        // Chart, against the raw lines.
        let chart = chart_summary(&records);
        let want =
            |t: &str, f: fn(&Value) -> bool| raw.iter().filter(|r| ty(r) == t && f(r)).count();
        assert_eq!(
            chart.problems.len(),
            want("Condition", raw_is_active_problem),
            "{pid} problems"
        );
        assert_eq!(
            chart.medications.len(),
            want("MedicationRequest", raw_is_current_med)
                + want("MedicationStatement", raw_is_current_med),
            "{pid} medications"
        );
        assert_eq!(
            chart.allergies.len(),
            want("AllergyIntolerance", raw_is_listed_allergy),
            "{pid} allergies"
        );
        for m in &chart.medications {
            assert!(!m.title.is_empty() && m.title != "MedicationRequest");
        }
        for a in &chart.allergies {
            assert!(
                a.criticality.is_some(),
                "Synthea allergies carry a criticality"
            );
        }

        // Documents: every DocumentReference, with the vault's attachments.
        let docs = documents(&records);
        assert_eq!(
            docs.len(),
            want("DocumentReference", |_| true),
            "{pid} documents"
        );
        assert_newest_first(
            &docs.iter().map(|d| d.sort_key).collect::<Vec<_>>(),
            "documents",
        );
        for d in &docs {
            let rec = records
                .iter()
                .find(|r| r.summary.id.to_string() == d.id)
                .expect("document's record");
            assert_eq!(d.attachments.len(), rec.summary.attachments.len());
            for (a, info) in d.attachments.iter().zip(&rec.summary.attachments) {
                assert_eq!(a.id.as_deref(), Some(info.id.as_str()));
                assert_eq!(a.size, Some(info.size));
                assert_eq!(a.content_type, info.content_type);
                assert_eq!(a.kind, DocKind::Text, "Synthea notes are text/plain");
            }
            assert!(d.author.is_some());
        }
        // No Observation in these exports: no labs, no vitals, and no panic.
        assert!(lab_table(&records).is_empty());
        assert!(vitals_series(&records).is_empty());
        total_rows += rows.len();
    }
    assert_eq!(
        total_rows + routed.unrouted,
        total_lines,
        "every routed resource is a timeline row"
    );
}

// ------------------------------------------------------------------ synthetic

fn bp(id: &str, date: &str, sys: f64, dia: f64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "effectiveDateTime": date,
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]},
             "valueQuantity": {"value": dia, "unit": "mmHg"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
             "valueQuantity": {"value": sys, "unit": "mmHg"}}
        ]
    })
}

fn vital(id: &str, code: &str, text: &str, date: &str, value: f64, unit: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": text},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": unit}
    })
}

#[test]
fn blood_pressure_is_two_lines_of_one_chart() {
    let (_d, _v, _s, records) = vault_with(vec![
        bp("bp2", "2021-06-01T10:00:00Z", 130.0, 85.0),
        bp("bp1", "2020-01-01", 120.0, 80.0),
        bp("bp3", "2022-03-04T08:00:00+01:00", 125.0, 82.0),
        vital("hr1", "8867-4", "Heart rate", "2022-01-01", 72.0, "/min"),
        vital("hr2", "8867-4", "Heart rate", "2023-01-01", 64.0, "/min"),
        vital(
            "o1",
            "2708-6",
            "Oxygen saturation in Arterial blood",
            "2023-01-01",
            97.0,
            "%",
        ),
        vital(
            "o2",
            "59408-5",
            "SpO2 by pulse oximetry",
            "2023-02-01",
            98.0,
            "%",
        ),
        // No LOINC code: recognised by code.text.
        json!({"resourceType": "Observation", "id": "w1", "code": {"text": "Body weight"},
               "effectiveDateTime": "2023-05-05", "valueQuantity": {"value": 70.5, "unit": "kg"}}),
        // Vital-signs category, unknown code: its own chart.
        vital(
            "hc1",
            "9843-4",
            "Head circumference",
            "2023-05-05",
            55.0,
            "cm",
        ),
    ]);
    let series = vitals_series(&records);
    let bp = series
        .iter()
        .find(|s| s.kind == Some(VitalKind::BloodPressure))
        .expect("a BP chart");
    assert_eq!(
        series.first().map(|s| s.key.as_str()),
        Some("blood_pressure")
    );
    assert_eq!(bp.lines.len(), 2, "systolic and diastolic");
    assert_eq!(bp.lines[0].name, "systolic");
    assert_eq!(bp.lines[1].name, "diastolic");
    assert_eq!(bp.lines[0].code.as_deref(), Some("8480-6"));
    let sys: Vec<f64> = bp.lines[0].points.iter().map(|p| p.value).collect();
    let dia: Vec<f64> = bp.lines[1].points.iter().map(|p| p.value).collect();
    assert_eq!(sys, [120.0, 130.0, 125.0], "points oldest first");
    assert_eq!(dia, [80.0, 85.0, 82.0]);
    assert_eq!(bp.unit.as_deref(), Some("mmHg"));
    let spo2 = series
        .iter()
        .find(|s| s.kind == Some(VitalKind::OxygenSaturation))
        .expect("SpO2 chart");
    assert_eq!(spo2.lines.len(), 1);
    assert_eq!(
        spo2.lines[0].points.len(),
        2,
        "both SpO2 codes on one chart"
    );
    assert!(series.iter().any(|s| s.kind == Some(VitalKind::Weight)));
    let hc = series.last().expect("head circumference chart");
    assert_eq!((hc.kind, hc.key.as_str()), (None, "9843-4"));

    let chart = chart_summary(&records);
    let kinds: Vec<VitalKind> = chart.vitals.iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        [
            VitalKind::BloodPressure,
            VitalKind::HeartRate,
            VitalKind::OxygenSaturation,
            VitalKind::Weight
        ]
    );
    let latest_bp = &chart.vitals[0];
    assert_eq!(latest_bp.value_text, "125/82 mmHg", "latest reading");
    assert_eq!(latest_bp.components.len(), 2);
    assert_eq!(latest_bp.components[0].name, "systolic");
    assert_eq!(chart.vitals[1].value, Some(64.0));
    assert_eq!(chart.vitals[1].value_text, "64 /min");
    assert_eq!(chart.vitals[2].value, Some(98.0));
    // Vitals are not lab results.
    assert!(lab_table(&records).is_empty());
}

#[test]
fn lab_rows_ranges_interpretations_and_text_values() {
    let (_d, _v, _s, records) = vault_with(vec![
        json!({"resourceType": "Observation", "id": "k", "status": "final",
               "category": [{"coding": [{"code": "laboratory"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "Potassium"}]},
               "effectiveDateTime": "2024-01-02T08:00:00Z",
               "valueQuantity": {"value": 5.9, "unit": "mmol/L"},
               "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}]}),
        json!({"resourceType": "Observation", "id": "na",
               "code": {"coding": [{"system": "http://loinc.org", "code": "2951-2"}], "text": "Sodium"},
               "effectiveDateTime": "2024-01-01",
               "valueQuantity": {"value": 150, "unit": "mmol/L"},
               "interpretation": [{"coding": [{"code": "L"}], "text": "low (as reported)"}],
               "referenceRange": [{"low": {"value": 135}, "high": {"value": 145}, "text": "135-145"}]}),
        json!({"resourceType": "Observation", "id": "s", "code": {"text": "Urine colour"},
               "effectiveDateTime": "2023-01-01", "valueString": "amber"}),
        json!({"resourceType": "Observation", "id": "abs", "code": {"text": "Glucose"},
               "dataAbsentReason": {"text": "sample haemolysed"}}),
        json!({"resourceType": "Observation", "id": "crp", "code": {"text": "CRP"},
               "effectiveDateTime": "2022-01-01",
               "valueQuantity": {"value": 5, "comparator": "<", "unit": "mg/L"},
               "referenceRange": [{"high": {"value": 10, "unit": "mg/L"}}]}),
        json!({"resourceType": "Observation", "id": "gone", "status": "entered-in-error",
               "code": {"text": "Mistake"}, "valueString": "x"}),
    ]);
    let labs = lab_table(&records);
    let titles: Vec<&str> = labs.iter().map(|l| l.title.as_str()).collect();
    assert_eq!(
        titles,
        ["Potassium", "Sodium", "Urine colour", "CRP", "Glucose"],
        "newest first, undated last, entered-in-error left out"
    );
    let k = &labs[0];
    assert_eq!((k.value, k.unit.as_deref()), (Some(5.9), Some("mmol/L")));
    let range = k.reference_range.as_ref().expect("range");
    assert_eq!((range.low, range.high), (Some(3.5), Some(5.1)));
    assert_eq!(range.text.as_deref(), Some("3.5–5.1 mmol/L"));
    assert_eq!(k.interpretation, Some(Interpretation::High));
    assert!(k.interpretation_computed);
    assert_eq!(k.code.as_deref(), Some("2823-3"));
    assert_eq!(k.category.as_deref(), Some("laboratory"));
    let na = &labs[1];
    assert_eq!(
        na.interpretation,
        Some(Interpretation::Low),
        "the lab's own flag wins"
    );
    assert!(!na.interpretation_computed);
    assert_eq!(na.interpretation_text.as_deref(), Some("low (as reported)"));
    assert_eq!(
        na.reference_range.as_ref().and_then(|r| r.text.as_deref()),
        Some("135-145")
    );
    assert_eq!(labs[2].value_text.as_deref(), Some("amber"));
    assert_eq!(labs[2].value, None);
    assert_eq!(labs[3].value_text.as_deref(), Some("< 5 mg/L"));
    assert_eq!(labs[3].interpretation, Some(Interpretation::Normal));
    assert_eq!(
        labs[4].value_text.as_deref(),
        Some("not available: sample haemolysed")
    );
    assert_eq!(labs[4].sort_key, None);
    let v = serde_json::to_value(k).expect("serializes");
    assert_eq!(v["interpretation"], "H");
    assert_eq!(v["reference_range"]["low"], 3.5);
}

#[test]
fn documents_of_every_kind() {
    let pdf = data_encoding::BASE64.encode(b"%PDF-1.4 tiny");
    let png = data_encoding::BASE64.encode(&[0x89, b'P', b'N', b'G', 0, 1, 2]);
    let (_d, _v, _s, records) = vault_with(vec![
        json!({"resourceType": "DocumentReference", "id": "d1", "status": "current",
               "description": "Discharge letter", "date": "2024-02-01T10:00:00Z",
               "author": [{"display": "Dr. Ada Quinn"}],
               "content": [{"attachment": {"contentType": "application/pdf", "title": "letter.pdf", "data": pdf}},
                           {"attachment": {"contentType": "image/jpeg", "url": "https://example.org/x.jpg", "size": 2048}}]}),
        json!({"resourceType": "DiagnosticReport", "id": "r1", "status": "final",
               "code": {"text": "Chest X-ray report"}, "effectiveDateTime": "2023-05-01",
               "performer": [{"display": "Radiology"}],
               "presentedForm": [{"contentType": "image/png", "data": png, "title": "xray.png"}]}),
        json!({"resourceType": "DiagnosticReport", "id": "r2", "code": {"text": "No form"}}),
        json!({"resourceType": "Media", "id": "m1", "createdDateTime": "2022-01-01",
               "content": {"contentType": "image/jpeg", "url": "https://example.org/photo.jpg", "title": "Rash photo"}}),
        json!({"resourceType": "Binary", "id": "b1", "contentType": "application/octet-stream",
               "data": data_encoding::BASE64.encode(b"abc")}),
    ]);
    let docs = documents(&records);
    let titles: Vec<&str> = docs.iter().map(|d| d.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Discharge letter",
            "Chest X-ray report",
            "Rash photo",
            "application/octet-stream"
        ]
    );
    let letter = &docs[0];
    assert_eq!(letter.kind, DocKind::Pdf);
    assert_eq!(letter.author.as_deref(), Some("Dr. Ada Quinn"));
    assert_eq!(
        letter.attachments.len(),
        2,
        "the vault's PDF and the external image"
    );
    assert!(
        letter.attachments[0]
            .id
            .as_deref()
            .is_some_and(|id| id.len() >= 32)
    );
    assert_eq!(letter.attachments[0].size, Some(13));
    assert_eq!(letter.attachments[0].title.as_deref(), Some("letter.pdf"));
    assert_eq!(letter.attachments[1].id, None);
    assert_eq!(letter.attachments[1].kind, DocKind::Image);
    assert_eq!(
        letter.attachments[1].url.as_deref(),
        Some("https://example.org/x.jpg")
    );
    assert_eq!(letter.attachments[1].size, Some(2048));
    let report = &docs[1];
    assert_eq!(report.kind, DocKind::Image);
    assert_eq!(
        report.attachments[0].size,
        Some(7),
        "size from the inline base64"
    );
    assert_eq!(report.author.as_deref(), Some("Radiology"));
    assert_eq!(docs[2].kind, DocKind::Image);
    let binary = &docs[3];
    assert_eq!(binary.attachments.len(), 1);
    assert_eq!(binary.attachments[0].size, Some(3));
    assert!(
        binary.attachments[0].id.is_some(),
        "Binary.data is a vault attachment"
    );
    assert_eq!(binary.kind, DocKind::Other);
}

#[test]
fn unknown_resource_types_show_generically() {
    let (_d, vault, summaries, records) = vault_with(vec![
        json!({"resourceType": "Basic", "id": "b1", "code": {"text": "Advance directive note"}, "created": "2021-01-01"}),
        json!({"resourceType": "MadeUpThing", "id": "x1"}),
        json!({"resourceType": "Condition", "id": "c1", "code": {"text": "Asthma"}}),
    ]);
    let rows = timeline_rows(&summaries);
    assert_eq!(rows.len(), vault.record_count().expect("count"));
    let basic = rows
        .iter()
        .find(|r| r.fhir_type == "Basic")
        .expect("Basic row");
    assert_eq!(basic.category, RecordGroup::Other);
    assert_eq!(basic.title, "Advance directive note");
    let made_up = rows
        .iter()
        .find(|r| r.fhir_type == "MadeUpThing")
        .expect("unknown type row");
    assert_eq!(made_up.title, "MadeUpThing", "no title: the type name");
    assert_eq!(made_up.category, RecordGroup::Other);
    let counts = category_counts(&summaries);
    let other = counts
        .iter()
        .find(|c| c.category == RecordGroup::Other)
        .expect("other");
    assert_eq!(other.count, 2);
    assert_eq!(counts.last().map(|c| c.category), Some(RecordGroup::Other));
    let chart = chart_summary(&records);
    assert_eq!(
        chart.problems.len(),
        1,
        "a Condition without clinicalStatus is active"
    );
    assert!(documents(&records).is_empty());
    assert!(lab_table(&records).is_empty());
}

fn summary(n: u8, date: Option<&str>, origin: Origin, signature: SignatureStatus) -> RecordSummary {
    RecordSummary {
        id: RecordId([n; 32]),
        fhir_type: "Observation".into(),
        fhir_id: format!("o{n}"),
        category: RecordGroup::Observation,
        title: format!("row {n}"),
        date: date.map(str::to_owned),
        key_values: Vec::new(),
        codes: Vec::new(),
        author: None,
        origin,
        signature,
        attachments: Vec::new(),
    }
}

/// `Origin::Shared` for "Ann Lee", expiring at 99 (through serde, so the test does not depend
/// on fields the vault may add with a default).
fn shared_origin() -> Origin {
    serde_json::from_value(json!({"kind": "shared", "label": "Ann Lee", "expires_at": 99}))
        .expect("a shared origin")
}

fn imported() -> Origin {
    Origin::Imported { source: "x".into() }
}

#[test]
fn timeline_is_newest_first_undated_last_and_stable() {
    let s = |n, d| summary(n, d, imported(), SignatureStatus::Unsigned);
    let input = vec![
        s(1, Some("2020")),
        s(2, None),
        s(3, Some("2021-05-01T10:00:00+02:00")), // 08:00Z
        s(4, Some("2021-05-01T09:00:00Z")),
        s(5, Some("not a date")),
        s(6, Some("2019-12-31")),
        s(7, Some("2021-05-01T08:00:00Z")), // same instant as 3: stays after it
        s(8, Some("2024-02-29")),
    ];
    let rows = timeline_rows(&input);
    let order: Vec<&str> = rows.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(
        order,
        [
            "row 8", "row 4", "row 3", "row 7", "row 1", "row 6", "row 2", "row 5"
        ]
    );
    assert_eq!(rows[0].sort_key, date_sort_key("2024-02-29"));
    assert_eq!(
        rows[7].date.as_deref(),
        Some("not a date"),
        "unparsable text kept, sorted last"
    );
    assert_eq!(rows[0].id, "08".repeat(32));
}

#[test]
fn provenance_labels() {
    let cases = [
        (
            summary(
                1,
                None,
                Origin::SelfEntered,
                SignatureStatus::Valid {
                    signer: "this device".into(),
                    card_hash: String::new(),
                },
            ),
            Provenance::SignedValid {
                signer: "this device".into(),
            },
            "signed by this device, valid",
        ),
        (
            summary(
                2,
                None,
                Origin::Received,
                SignatureStatus::Valid {
                    signer: "Dr. Ada Quinn".into(),
                    card_hash: "ab".into(),
                },
            ),
            Provenance::SignedValid {
                signer: "Dr. Ada Quinn".into(),
            },
            "signed by Dr. Ada Quinn, valid",
        ),
        (
            summary(
                3,
                None,
                Origin::Imported {
                    source: "ips.json".into(),
                },
                SignatureStatus::Unsigned,
            ),
            Provenance::ImportedUnsigned {
                source: "ips.json".into(),
            },
            "imported, unsigned",
        ),
        (
            summary(4, None, Origin::Received, SignatureStatus::Invalid),
            Provenance::SignatureInvalid,
            "signature invalid",
        ),
        (
            summary(5, None, shared_origin(), SignatureStatus::Invalid),
            Provenance::SignatureInvalid,
            "signature invalid",
        ),
        (
            summary(6, None, shared_origin(), SignatureStatus::Unsigned),
            Provenance::Shared {
                share: "Ann Lee".into(),
                expires_at: 99,
                signer: None,
            },
            "shared by Ann Lee, unsigned",
        ),
        (
            summary(
                7,
                None,
                shared_origin(),
                SignatureStatus::Valid {
                    signer: "Ann Lee".into(),
                    card_hash: String::new(),
                },
            ),
            Provenance::Shared {
                share: "Ann Lee".into(),
                expires_at: 99,
                signer: Some("Ann Lee".into()),
            },
            "shared by Ann Lee; signed by Ann Lee, valid",
        ),
        (
            summary(8, None, Origin::SelfEntered, SignatureStatus::Unsigned),
            Provenance::Unsigned,
            "unsigned",
        ),
    ];
    for (s, want, label) in cases {
        let row = &timeline_rows(std::slice::from_ref(&s))[0];
        assert_eq!(row.provenance, want);
        assert_eq!(row.provenance_label, label);
    }
}

#[test]
fn rows_serialize_with_stable_snake_case_fields() {
    let source = Origin::Imported {
        source: "export-2024.ndjson".into(),
    };
    let mut s = summary(9, Some("2020-01-01"), source, SignatureStatus::Unsigned);
    s.category = RecordGroup::Condition;
    s.key_values.push(carekey_vault::KeyValue {
        key: "clinical status".into(),
        value: "active".into(),
    });
    let v = serde_json::to_value(&timeline_rows(&[s])[0]).expect("serializes");
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "id",
        "fhir_type",
        "category",
        "title",
        "date",
        "status",
        "detail",
        "author",
        "provenance",
        "provenance_label",
        "attachments",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(v["category"], "condition");
    assert_eq!(v["status"], "active");
    // The row names the provenance's kind only (the import's file name is in the record's
    // detail), and the order is Rust's: no sort key on the wire.
    assert_eq!(v["provenance"], "imported_unsigned");
    assert_eq!(v["provenance_label"], "imported, unsigned");
    assert!(
        !v.to_string().contains("export-2024"),
        "the source name is not repeated on the row: {v}"
    );
    let c = serde_json::to_value(category_counts(&[])).expect("serializes");
    assert_eq!(
        c[0],
        json!({"category": "condition", "label": "Problems", "count": 0})
    );
    let chart = serde_json::to_value(display::ChartSummary::default()).expect("serializes");
    assert_eq!(
        chart,
        json!({"problems": [], "medications": [], "allergies": [], "vitals": []})
    );
}

fn malformed() -> Vec<Value> {
    let long = "é".repeat(1000);
    vec![
        json!({"resourceType": "Observation", "id": "m1", "code": 42, "valueQuantity": "high",
               "referenceRange": "normal", "interpretation": {"coding": "H"},
               "component": [{"code": [], "valueQuantity": {"value": "abc"}}, 7, null],
               "effectiveDateTime": 2015, "category": {"coding": [{"code": "vital-signs"}]}}),
        json!({"resourceType": "Observation", "id": "m2", "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
               "effectiveDateTime": "2020-01-01", "valueQuantity": {"value": true, "unit": 5}}),
        json!({"resourceType": "Observation", "id": "m3", "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
               "effectiveDateTime": "2020-01-02", "valueQuantity": {"value": "37.2", "unit": "Cel"}}),
        json!({"resourceType": "Observation", "id": "m4", "code": {"text": long},
               "valueQuantity": {"value": 1e300}, "referenceRange": [{"low": {"value": "x"}, "high": []}],
               "interpretation": [{"coding": [{"code": 1}]}], "hasMember": "Observation/x", "note": "n"}),
        json!({"resourceType": "Observation", "id": "m5", "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
               "effectiveDateTime": "2020-02-02", "component": {"code": "x"}}),
        json!({"resourceType": "Condition", "id": "c1", "clinicalStatus": ["active"],
               "code": {"coding": {"display": "x"}}, "onsetDateTime": {"y": 1}, "severity": 3}),
        json!({"resourceType": "Condition", "id": "c2", "clinicalStatus": {"coding": [{"code": 5}]}, "code": {"text": long}}),
        json!({"resourceType": "MedicationRequest", "id": "mr1", "status": 5,
               "medicationReference": "Medication/zzz", "dosageInstruction": "twice daily"}),
        json!({"resourceType": "MedicationStatement", "id": "ms1", "medicationReference": {"reference": 7},
               "dosage": [{"doseAndRate": {"doseQuantity": {"value": "2", "unit": "mg"}}, "timing": {"repeat": {"frequency": "x"}}}]}),
        json!({"resourceType": "AllergyIntolerance", "id": "a1", "category": "food",
               "reaction": {"manifestation": "hives"}, "criticality": ["high"], "clinicalStatus": "active"}),
        json!({"resourceType": "DocumentReference", "id": "d1", "content": {"attachment": 5},
               "author": "Dr X", "date": "not a date", "description": long}),
        json!({"resourceType": "DocumentReference", "id": "d2", "content": [{"attachment": {"contentType": 7, "size": "big"}}, 3]}),
        json!({"resourceType": "DiagnosticReport", "id": "r1", "presentedForm": [{"contentType": 7, "data": 12, "size": -1}, "x"]}),
        json!({"resourceType": "Media", "id": "md1", "content": []}),
        json!({"resourceType": "Binary", "id": "bn1", "contentType": {"x": 1}}),
        json!({"resourceType": "Patient", "id": "p1", "name": "not an array", "birthDate": ["1970"]}),
    ]
}

#[test]
fn malformed_resources_give_rows_without_panicking() {
    let resources = malformed();
    let n = resources.len();
    let (_d, _v, summaries, records) = vault_with(resources);
    assert_eq!(records.len(), n);
    let rows = timeline_rows(&summaries);
    assert_eq!(rows.len(), n, "no record dropped");
    for r in &rows {
        assert!(!r.title.is_empty());
        assert!(r.title.chars().count() <= MAX_TITLE_CHARS, "title bounded");
    }
    let labs = lab_table(&records);
    assert_eq!(labs.len(), 2, "m1 (object category: not vitals) and m4");
    let m4 = labs
        .iter()
        .find(|l| l.value == Some(1e300))
        .expect("m4 row");
    assert!(m4.title.chars().count() <= MAX_TITLE_CHARS && m4.title.ends_with('…'));
    assert_eq!(m4.reference_range, None);
    let series = vitals_series(&records);
    let temp = series
        .iter()
        .find(|s| s.kind == Some(VitalKind::Temperature))
        .expect("temperature chart from the numeric string");
    assert_eq!(temp.lines[0].points.len(), 1);
    assert_eq!(temp.lines[0].points[0].value, 37.2);
    let chart = chart_summary(&records);
    assert_eq!(
        chart
            .vitals
            .iter()
            .filter(|v| v.kind == VitalKind::Temperature)
            .count(),
        1
    );
    assert!(
        chart
            .problems
            .iter()
            .all(|p| p.title.chars().count() <= MAX_TITLE_CHARS)
    );
    assert_eq!(
        chart.medications.len(),
        2,
        "a numeric status reads as missing"
    );
    assert!(
        chart
            .medications
            .iter()
            .any(|m| m.dosage.as_deref() == Some("twice daily"))
    );
    assert!(
        chart
            .medications
            .iter()
            .any(|m| m.dosage.as_deref() == Some("2 mg"))
    );
    assert_eq!(chart.allergies.len(), 1);
    assert_eq!(chart.allergies[0].category.as_deref(), Some("food"));
    let docs = documents(&records);
    assert_eq!(
        docs.len(),
        5,
        "both DocumentReferences, the report with a form, Media, Binary"
    );
    for d in &docs {
        assert!(d.title.chars().count() <= MAX_TITLE_CHARS);
    }
    assert!(serde_json::to_string(&(rows, labs, series, chart, docs)).is_ok());

    // Records whose resource is not even an object (not something the vault stores; the
    // functions still must not panic).
    let broken: Vec<Record> = [Value::Null, json!([1, 2]), json!("Observation"), json!(3.5)]
        .into_iter()
        .enumerate()
        .map(|(i, resource)| Record {
            summary: summary(
                u8::try_from(i).unwrap_or(0),
                Some("２０２０"),
                imported(),
                SignatureStatus::Unsigned,
            ),
            resource,
        })
        .collect();
    let summaries: Vec<RecordSummary> = broken.iter().map(|r| r.summary.clone()).collect();
    assert_eq!(timeline_rows(&summaries).len(), broken.len());
    let _ = chart_summary(&broken);
    let _ = lab_table(&broken);
    let _ = vitals_series(&broken);
    assert!(documents(&broken).is_empty());
}

#[test]
fn long_titles_are_cut_at_a_char_boundary() {
    let mut s = summary(1, None, imported(), SignatureStatus::Unsigned);
    s.title = "👩‍⚕️".repeat(200);
    let row = &timeline_rows(&[s])[0];
    assert_eq!(row.title.chars().count(), MAX_TITLE_CHARS);
    assert!(row.title.ends_with('…'));
    let mut e = summary(2, None, imported(), SignatureStatus::Unsigned);
    e.title = "   ".into();
    assert_eq!(
        timeline_rows(&[e])[0].title,
        "Observation",
        "blank title: the type"
    );
}

#[test]
fn lab_trends_group_by_test_keep_one_unit_and_shade_the_newest_range() {
    let lab = |id: &str,
               code: &str,
               date: &str,
               v: f64,
               unit: &str,
               range: Option<(f64, f64, &str)>| {
        let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": format!("Test {code}")},
            "effectiveDateTime": date, "valueQuantity": {"value": v, "unit": unit}});
        if let Some((lo, hi, u)) = range {
            o["referenceRange"] =
                json!([{"low": {"value": lo, "unit": u}, "high": {"value": hi, "unit": u}}]);
        }
        o
    };
    let (_d, _v, _s, records) = vault_with(vec![
        lab(
            "a1",
            "4548-4",
            "2024-01-01",
            7.9,
            "%",
            Some((4.0, 5.6, "%")),
        ),
        lab("a2", "4548-4", "2024-04-01", 7.4, "%", None),
        lab(
            "a3",
            "4548-4",
            "2024-07-01",
            7.0,
            "%",
            Some((4.0, 5.7, "%")),
        ),
        // The same test in another unit stays in the table only.
        lab("a4", "4548-4", "2023-06-01", 60.0, "mmol/mol", None),
        // Measured once: no trend.
        lab(
            "k1",
            "2823-3",
            "2024-01-02",
            4.1,
            "mmol/L",
            Some((3.5, 5.1, "mmol/L")),
        ),
        // A range in another unit than the values is not shaded.
        lab(
            "l1",
            "18262-6",
            "2024-01-01",
            3.1,
            "mmol/L",
            Some((0.0, 100.0, "mg/dL")),
        ),
        lab("l2", "18262-6", "2024-06-01", 2.8, "mmol/L", None),
    ]);
    let table = carekey_app::display::lab_table(&records);
    assert_eq!(table.len(), 7);
    let trends = carekey_app::display::lab_series(&table);
    let keys: Vec<&str> = trends.iter().map(|s| s.key.as_str()).collect();
    // Newest result first: HbA1c (July), then LDL (June); potassium has one value.
    assert_eq!(keys, ["4548-4", "18262-6"]);
    let a1c = &trends[0].lines[0];
    assert_eq!(a1c.unit.as_deref(), Some("%"));
    let values: Vec<f64> = a1c.points.iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        [7.9, 7.4, 7.0],
        "oldest first, the mmol/mol value left out"
    );
    let range = a1c.range.as_ref().expect("a range");
    assert_eq!(
        (range.low, range.high),
        (Some(4.0), Some(5.7)),
        "the newest stated range"
    );
    assert!(trends[1].lines[0].range.is_none());
    // Vitals carry no range.
    assert!(
        carekey_app::display::vitals_series(&records)
            .iter()
            .all(|s| s.lines.iter().all(|l| l.range.is_none()))
    );
}

// ------------------------------------------------------------------ the chart's record reads

/// The chart's views of whole records (summary, labs, lab trends, vitals, documents) as JSON.
fn record_views(records: &[Record]) -> Value {
    let labs = lab_table(records);
    json!({
        "summary": chart_summary(records),
        "lab_trends": display::lab_series(&labs),
        "labs": labs,
        "vitals": vitals_series(records),
        "documents": documents(records),
    })
}

/// The doctor's chart opens only the records [`display::chart_reads_record`] names; the views
/// must come out exactly as from every record: on the demo patient (vitals, labs, a PDF), the
/// IPS bundle and every Synthea patient. And the filter must leave records out, or it saves
/// nothing.
#[test]
fn the_chart_views_need_only_the_records_it_opens() {
    let mut sets: Vec<(String, Vec<Record>)> = Vec::new();
    let demo = carekey_app::demo::patient_bundle();
    let entries = demo["entry"].as_array().expect("demo entries").clone();
    let (_d, _v, _s, records) =
        vault_with(entries.into_iter().map(|e| e["resource"].clone()).collect());
    sets.push(("demo patient".into(), records));
    if let Some(fx) = fixtures("fhir/ips-bundle-01.json") {
        let bundle: Value = serde_json::from_slice(
            &std::fs::read(fx.join("fhir/ips-bundle-01.json")).expect("IPS reads"),
        )
        .expect("IPS parses");
        let resources = bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["resource"].clone())
            .collect();
        sets.push(("IPS".into(), vault_with(resources).3));
    }
    if let Some(fx) = fixtures("synthea-10") {
        let routed = route_by_patient(&synthea_files(&fx)).expect("routes");
        for (i, files) in routed.patients.into_values().enumerate() {
            let dir = tempfile::tempdir().expect("dir");
            let mut vault = new_vault(&dir, "s.sqlite");
            vault
                .import_ndjson(
                    &files,
                    &import_opts("synthea"),
                    &mut ImportControl::default(),
                )
                .expect("imports");
            sets.push((format!("Synthea patient {i}"), load(&mut vault).1));
        }
    }
    let mut left_out = 0;
    for (name, records) in &sets {
        let opened: Vec<Record> = records
            .iter()
            .filter(|r| display::chart_reads_record(&r.summary))
            .cloned()
            .collect();
        left_out += records.len() - opened.len();
        assert_eq!(
            record_views(&opened),
            record_views(records),
            "{name}: the chart's views differ when only the records it opens are read"
        );
    }
    if sets.len() > 2 {
        assert!(left_out > 1000, "the filter leaves out {left_out} records");
    }
}
