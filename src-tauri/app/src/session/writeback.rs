//! The doctor's write-back: what the clinician composes (a note, a blood pressure, a
//! medication) becomes a FHIR R4 resource here, is signed and sealed by the client
//! (docs/protocol.md "Notes"), and is listed as sent.
//!
//! The list says what the doctor's device knows and nothing more: a note is "on the relay"
//! once the relay took it; whether the patient accepted it is the patient's to say, and the
//! protocol sends no receipt back.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::doctor::DoctorApp;
use super::settings::{self, APP_STATE_VERSION};
use super::smart_source::{is_smart_source, no_write_back};
use super::{hex, now, random_id};
use crate::display::clip;
use crate::error::Result;
use crate::ipc::{self, Validate};

/// State name of the sent list.
const SENT: &str = "carekey/app/doctor/sent/v1";
/// Sent items kept (the oldest go first).
const SENT_KEEP: usize = 500;
/// LOINC: blood pressure panel and its two components (https://loinc.org/85354-9).
const LOINC_BP_PANEL: &str = "85354-9";
const LOINC_SYSTOLIC: &str = "8480-6";
const LOINC_DIASTOLIC: &str = "8462-4";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// One sent item, as the Sent list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentNoteView {
    /// Id of this entry (hex).
    pub id: String,
    /// The patient link it went to.
    pub patient: String,
    /// The patient's name as their card gives it.
    pub patient_name: String,
    /// The FHIR type sent.
    pub resource_type: String,
    /// A short title.
    pub title: String,
    /// When it was sent (unix seconds).
    pub sent_at: u64,
    /// What this device knows of its delivery.
    pub delivery: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SentState {
    version: u32,
    sent: Vec<SentNoteView>,
}

/// The FHIR resource for a write-back and its title for the Sent list.
pub fn resource(w: &ipc::WriteBack) -> (Value, String) {
    match w {
        ipc::WriteBack::Note { text, .. } => (
            // FHIR R4 Communication: a message from a practitioner to the patient.
            json!({"resourceType": "Communication", "status": "completed",
                "payload": [{"contentString": text}]}),
            clip(text, 80),
        ),
        ipc::WriteBack::BloodPressure {
            systolic,
            diastolic,
            date,
            ..
        } => {
            let component = |code: &str, display: &str, v: f64| {
                json!({"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                    "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}})
            };
            (
                // FHIR R4 vital signs profile: blood pressure panel with both components.
                json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": OBSERVATION_CATEGORY,
                    "code": "vital-signs", "display": "Vital Signs"}]}],
                "code": {"coding": [{"system": LOINC, "code": LOINC_BP_PANEL,
                    "display": "Blood pressure panel with all children optional"}],
                    "text": "Blood pressure"},
                "effectiveDateTime": date,
                "component": [
                    component(LOINC_SYSTOLIC, "Systolic blood pressure", *systolic),
                    component(LOINC_DIASTOLIC, "Diastolic blood pressure", *diastolic),
                ]}),
                format!("Blood pressure {systolic}/{diastolic} mmHg"),
            )
        }
        ipc::WriteBack::Medication { text, dosage, .. } => {
            let mut v = json!({"resourceType": "MedicationRequest", "status": "active",
                "intent": "order", "medicationCodeableConcept": {"text": text}});
            if let Some(d) = dosage {
                v["dosageInstruction"] = json!([{"text": d}]);
            }
            (v, clip(text, 80))
        }
    }
}

impl DoctorApp {
    /// Builds, signs and sends a write-back; lists it as sent. A SMART Health Link or Card
    /// import is refused with `no_write_back` ([`NO_WRITE_BACK`](crate::session::NO_WRITE_BACK)): it
    /// has no mailbox to send to.
    pub async fn write_back(&self, args: ipc::WriteBack) -> Result<SentNoteView> {
        args.validate()?;
        let (resource, title) = resource(&args);
        let resource_type = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let patient = args.patient().to_owned();
        let entry = self.patients().await?.into_iter().find(|l| l.id == patient);
        // A SMART Health Link or Card import has no mailbox: refused before anything is built
        // or signed, with its own code (the UI hides the compose form for it too).
        if entry.as_ref().is_some_and(|l| is_smart_source(&l.share)) {
            return Err(no_write_back());
        }
        let patient_name = entry.map(|l| l.name).unwrap_or_default();
        self.send_note(ipc::SendNote {
            patient: patient.clone(),
            resource,
        })
        .await?;
        let view = SentNoteView {
            id: hex(&random_id()),
            patient,
            patient_name,
            resource_type,
            title,
            sent_at: now(),
            delivery: "on the relay for the patient's device (they decide whether to keep it)"
                .to_owned(),
        };
        let saved = view.clone();
        self.vault_run(move |v| {
            let mut st: SentState = settings::load(v, SENT)?.unwrap_or_default();
            st.version = APP_STATE_VERSION;
            st.sent.push(saved);
            if st.sent.len() > SENT_KEEP {
                let extra = st.sent.len() - SENT_KEEP;
                st.sent.drain(..extra);
            }
            settings::save(v, SENT, &st)
        })
        .await?;
        Ok(view)
    }

    /// What this device sent, newest first.
    pub async fn sent_notes(&self) -> Result<Vec<SentNoteView>> {
        let mut st: SentState = self
            .vault_run(|v| Ok(settings::load(v, SENT)?.unwrap_or_default()))
            .await?;
        st.sent.reverse();
        Ok(st.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn blood_pressure_has_both_components_and_passes_the_note_check() {
        let w = ipc::WriteBack::BloodPressure {
            patient: P.into(),
            systolic: 128.0,
            diastolic: 82.0,
            date: "2026-11-30".into(),
        };
        w.validate().expect("valid");
        let (r, title) = resource(&w);
        crate::validate::note_resource(&r).expect("a resource a note may carry");
        assert_eq!(r["code"]["coding"][0]["code"], LOINC_BP_PANEL);
        let comps = r["component"].as_array().expect("components");
        assert_eq!(comps.len(), 2);
        assert_eq!(comps[0]["code"]["coding"][0]["code"], LOINC_SYSTOLIC);
        assert_eq!(comps[0]["valueQuantity"]["value"], 128.0);
        assert_eq!(comps[1]["code"]["coding"][0]["code"], LOINC_DIASTOLIC);
        assert_eq!(comps[1]["valueQuantity"]["value"], 82.0);
        assert_eq!(title, "Blood pressure 128/82 mmHg");
    }

    #[test]
    fn every_kind_builds_a_resource_a_note_may_carry() {
        for w in [
            ipc::WriteBack::Note {
                patient: P.into(),
                text: "Keep taking the inhaler.".into(),
            },
            ipc::WriteBack::Medication {
                patient: P.into(),
                text: "Salbutamol 100 µg".into(),
                dosage: Some("2 puffs as needed".into()),
            },
        ] {
            w.validate().expect("valid");
            crate::validate::note_resource(&resource(&w).0).expect("allowed type");
        }
    }

    #[test]
    fn implausible_readings_and_empty_notes_are_refused() {
        let bp = |s: f64, d: f64, date: &str| ipc::WriteBack::BloodPressure {
            patient: P.into(),
            systolic: s,
            diastolic: d,
            date: date.into(),
        };
        for w in [
            bp(80.0, 90.0, "2026-11-30"),
            bp(f64::NAN, 80.0, "2026-11-30"),
            bp(400.0, 80.0, "2026-11-30"),
            bp(120.0, 80.0, "yesterday"),
            ipc::WriteBack::Note {
                patient: P.into(),
                text: "   ".into(),
            },
            ipc::WriteBack::Note {
                patient: "not hex".into(),
                text: "x".into(),
            },
        ] {
            assert_eq!(w.validate().expect_err("refused").code, "invalid_input");
        }
    }
}
