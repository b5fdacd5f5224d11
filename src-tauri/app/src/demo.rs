//! The demo patient (README "Demo"): a FHIR R4 Bundle made here, with no external file, so a
//! fresh clone shows charts with something in them: a year of blood pressure, heart rate and
//! weight, quarterly HbA1c and LDL with reference ranges, problems, medications, an allergy,
//! an immunization, visits and one PDF letter.
//!
//! Everything is fictional and deterministic (the same bundle on every run).

use serde_json::{Value, json};

/// The demo patient's name.
pub const DEMO_PATIENT: &str = "Alex Demo";
/// The demo clinician's name.
pub const DEMO_DOCTOR: &str = "Dr. Sam Carter";

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn coded(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

fn category(code: &str) -> Value {
    json!([{"coding": [{"system": CATEGORY, "code": code}]}])
}

fn quantity(value: f64, unit: &str, ucum: &str) -> Value {
    json!({"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum})
}

/// A one-page PDF (PDF 1.4, Helvetica, one text line per entry) with a correct cross-reference
/// table, so viewers open it without repair.
pub fn letter_pdf(lines: &[&str]) -> Vec<u8> {
    let mut text = String::from("BT /F1 12 Tf 72 760 Td 16 TL\n");
    for l in lines {
        // PDF string escapes: backslash and parentheses.
        let esc = l
            .replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)");
        text.push_str(&format!("({esc}) Tj T*\n"));
    }
    text.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{text}endstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// The demo patient as a FHIR R4 `collection` Bundle.
pub fn patient_bundle() -> Value {
    let patient_ref = "Patient/demo-patient";
    let mut entries: Vec<Value> = Vec::new();
    let mut push = |mut r: Value| {
        if r["resourceType"] != "Patient" {
            r["subject"] = json!({"reference": patient_ref});
        }
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        let ty = r["resourceType"].as_str().unwrap_or_default().to_owned();
        entries.push(json!({"fullUrl": format!("urn:carekey-demo:{ty}/{id}"), "resource": r}));
    };
    push(json!({"resourceType": "Patient", "id": "demo-patient",
        "name": [{"family": "Demo", "given": ["Alex"], "text": DEMO_PATIENT}],
        "gender": "other", "birthDate": "1968-05-14"}));
    for (id, code, name, onset) in [
        ("c-htn", "38341003", "Hypertension", "2019-03-02"),
        (
            "c-t2d",
            "44054006",
            "Type 2 diabetes mellitus",
            "2021-06-18",
        ),
        ("c-asthma", "195967001", "Asthma", "1990-09-01"),
    ] {
        push(json!({"resourceType": "Condition", "id": id,
            "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
            "code": coded(SNOMED, code, name), "onsetDateTime": onset}));
    }
    for (id, name, dose) in [
        (
            "m-lisinopril",
            "Lisinopril 10 mg tablet",
            "1 tablet every morning",
        ),
        (
            "m-metformin",
            "Metformin 500 mg tablet",
            "1 tablet twice a day with meals",
        ),
        (
            "m-salbutamol",
            "Salbutamol 100 µg inhaler",
            "2 puffs when needed",
        ),
    ] {
        push(
            json!({"resourceType": "MedicationStatement", "id": id, "status": "active",
            "medicationCodeableConcept": {"text": name}, "dosage": [{"text": dose}]}),
        );
    }
    push(
        json!({"resourceType": "AllergyIntolerance", "id": "a-penicillin",
        "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
        "criticality": "high", "code": coded(SNOMED, "764146007", "Penicillin"),
        "reaction": [{"manifestation": [{"text": "Hives"}]}]}),
    );
    push(
        json!({"resourceType": "Immunization", "id": "i-flu", "status": "completed",
        "vaccineCode": {"text": "Influenza vaccine 2025/26"}, "occurrenceDateTime": "2025-10-06"}),
    );

    // A year of monthly vitals: blood pressure coming down on treatment.
    for m in 0..12u32 {
        let date = format!("2025-{:02}-15", m + 1);
        let f = f64::from(m);
        let (sys, dia) = (152.0 - 2.0 * f, 96.0 - 1.2 * f);
        push(
            json!({"resourceType": "Observation", "id": format!("v-bp-{m}"), "status": "final",
            "category": category("vital-signs"),
            "code": coded(LOINC, "85354-9", "Blood pressure panel"),
            "effectiveDateTime": date,
            "component": [
                {"code": coded(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": quantity(sys.round(), "mmHg", "mm[Hg]")},
                {"code": coded(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": quantity(dia.round(), "mmHg", "mm[Hg]")}
            ]}),
        );
        push(
            json!({"resourceType": "Observation", "id": format!("v-hr-{m}"), "status": "final",
            "category": category("vital-signs"), "code": coded(LOINC, "8867-4", "Heart rate"),
            "effectiveDateTime": date, "valueQuantity": quantity(78.0 - (f % 4.0), "beats/minute", "/min")}),
        );
        push(
            json!({"resourceType": "Observation", "id": format!("v-wt-{m}"), "status": "final",
            "category": category("vital-signs"), "code": coded(LOINC, "29463-7", "Body weight"),
            "effectiveDateTime": date, "valueQuantity": quantity(92.0 - 0.4 * f, "kg", "kg")}),
        );
    }
    // Quarterly labs with reference ranges.
    for q in 0..4u32 {
        let date = format!("2025-{:02}-20", 3 * q + 1);
        let f = f64::from(q);
        push(
            json!({"resourceType": "Observation", "id": format!("l-a1c-{q}"), "status": "final",
            "category": category("laboratory"),
            "code": coded(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
            "effectiveDateTime": date, "valueQuantity": quantity(8.1 - 0.4 * f, "%", "%"),
            "referenceRange": [{"low": quantity(4.0, "%", "%"), "high": quantity(5.6, "%", "%")}]}),
        );
        push(
            json!({"resourceType": "Observation", "id": format!("l-ldl-{q}"), "status": "final",
            "category": category("laboratory"),
            "code": coded(LOINC, "18262-6", "LDL Cholesterol"),
            "effectiveDateTime": date, "valueQuantity": quantity(3.9 - 0.3 * f, "mmol/L", "mmol/L"),
            "referenceRange": [{"high": quantity(3.0, "mmol/L", "mmol/L")}]}),
        );
    }
    for (i, date) in ["2025-01-15", "2025-06-15", "2025-11-15"]
        .iter()
        .enumerate()
    {
        push(
            json!({"resourceType": "Encounter", "id": format!("e-{i}"), "status": "finished",
            "class": {"code": "AMB", "display": "ambulatory"},
            "type": [{"text": "Check-up"}], "period": {"start": date, "end": date}}),
        );
    }
    let pdf = letter_pdf(&[
        "Carekey demo clinic - letter (fictional)",
        "",
        "Patient: Alex Demo, born 1968-05-14",
        "Blood pressure has improved on lisinopril; HbA1c is falling on metformin.",
        "Plan: continue treatment, review in three months.",
    ]);
    push(
        json!({"resourceType": "DocumentReference", "id": "d-letter", "status": "current",
        "type": {"text": "Clinic letter"}, "date": "2025-11-16T10:00:00Z",
        "author": [{"display": DEMO_DOCTOR}],
        "content": [{"attachment": {"contentType": "application/pdf", "title": "Clinic letter.pdf",
            "size": pdf.len(), "data": data_encoding::BASE64.encode(&pdf)}}]}),
    );
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pdf_cross_reference_points_at_each_object() {
        let pdf = letter_pdf(&["Hello (world)"]);
        let text = String::from_utf8(pdf.clone()).expect("ascii");
        assert!(text.starts_with("%PDF-1.4\n") && text.ends_with("%%EOF\n"));
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(text[startxref..].starts_with("xref\n"));
        // Every in-use entry's offset lands on "<n> 0 obj".
        for (n, line) in text[startxref..].lines().skip(3).take(5).enumerate() {
            let off: usize = line[..10].parse().expect("offset");
            assert!(
                text[off..].starts_with(&format!("{} 0 obj", n + 1)),
                "object {}",
                n + 1
            );
        }
        assert!(text.contains("(Hello \\(world\\)) Tj"));
    }

    #[test]
    fn the_bundle_has_series_ranges_and_a_pdf() {
        let b = patient_bundle();
        let entries = b["entry"].as_array().expect("entries");
        let of = |ty: &str| {
            entries
                .iter()
                .filter(|e| e["resource"]["resourceType"] == ty)
                .count()
        };
        assert_eq!(of("Patient"), 1);
        assert_eq!(of("Observation"), 12 * 3 + 4 * 2);
        assert_eq!(of("DocumentReference"), 1);
        let doc = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "DocumentReference")
            .expect("doc");
        let data = doc["resource"]["content"][0]["attachment"]["data"]
            .as_str()
            .expect("data");
        let pdf = data_encoding::BASE64.decode(data.as_bytes()).expect("b64");
        assert!(pdf.starts_with(b"%PDF-"));
        // Deterministic.
        assert_eq!(b, patient_bundle());
        // Valid for the importer's sniffing.
        let bytes = serde_json::to_vec(&b).expect("json");
        assert!(crate::validate::import_file(&bytes).is_ok());
    }
}
