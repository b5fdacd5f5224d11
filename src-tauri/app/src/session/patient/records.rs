//! The patient's own records: the timeline, trends, search, one record and its files, a record
//! entered by hand, and imports of FHIR files.

use carekey_vault::{AuditEvent, ImportControl, ImportOptions, ImportReport, NdjsonFile};
use serde::Serialize;

use super::PatientApp;
use crate::display::{self, TimelineRow};
use crate::error::{AppError, Result};
use crate::events::Throttled;
use crate::ipc::{self, Validate};
use crate::session::files::{self, FileBytes};
use crate::validate;

/// Most search results shown.
const SEARCH_LIMIT: usize = 500;

/// The trend charts of the Records screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendsView {
    /// One chart per vital sign (blood pressure with two lines).
    pub vitals: Vec<display::Series>,
    /// One chart per lab test measured at least twice, shaded with its reference range.
    pub labs: Vec<display::Series>,
}

/// FHIR data handed to [`PatientApp::import_data`].
#[derive(Debug)]
pub enum ImportData {
    /// A FHIR Bundle (JSON).
    Bundle(zeroize::Zeroizing<Vec<u8>>),
    /// One patient's FHIR bulk-export NDJSON files (`carekey_vault::route_by_patient`).
    Ndjson(Vec<NdjsonFile>),
}

impl PatientApp {
    // ------------------------------------------------------------------ records

    /// Every record as a timeline row, newest first.
    pub async fn timeline(&self) -> Result<Vec<TimelineRow>> {
        self.vault
            .run(|v| Ok(display::timeline_rows(v.summaries()?)))
            .await
    }

    /// The trend charts of the patient's own measurements: vital signs, and lab results
    /// measured more than once with their reference ranges.
    pub async fn trends(&self) -> Result<TrendsView> {
        self.vault
            .run(|v| {
                let summaries = v.list()?.records;
                let mut records = Vec::new();
                for s in summaries.iter().filter(|s| {
                    matches!(
                        s.category,
                        carekey_vault::RecordGroup::Observation
                            | carekey_vault::RecordGroup::Vitals
                    )
                }) {
                    records.push(v.get_record(&s.id)?);
                }
                let labs = display::lab_table(&records);
                Ok(TrendsView {
                    vitals: display::vitals_series(&records),
                    labs: display::lab_series(&labs),
                })
            })
            .await
    }

    /// Search as the user types.
    pub async fn search(&self, args: ipc::Search) -> Result<Vec<TimelineRow>> {
        args.validate()?;
        self.vault
            .run(move |v| {
                if args.query.trim().is_empty() {
                    return Ok(display::timeline_rows(v.summaries()?));
                }
                Ok(display::timeline_rows(
                    &v.search(&args.query, SEARCH_LIMIT)?,
                ))
            })
            .await
    }

    /// One record with its resource and provenance.
    pub async fn record(&self, args: ipc::RecordRef) -> Result<carekey_vault::Record> {
        args.validate()?;
        let id = crate::session::record_id(&args.id)?;
        self.vault.run(move |v| Ok(v.get_record(&id)?)).await
    }

    /// The files of one record (attachments of a document, a report's presented form, an
    /// image), numbered as [`PatientApp::attachment`] takes them; empty for a record without
    /// files.
    pub async fn record_files(
        &self,
        args: ipc::RecordRef,
    ) -> Result<Vec<display::DocumentAttachment>> {
        args.validate()?;
        let id = crate::session::record_id(&args.id)?;
        self.vault
            .run(move |v| {
                let rec = v.get_record(&id)?;
                Ok(display::document(&rec)
                    .map(|d| d.attachments)
                    .unwrap_or_default())
            })
            .await
    }

    /// The bytes of one file of a record, for the viewer.
    pub async fn attachment(&self, args: ipc::AttachmentRef) -> Result<FileBytes> {
        args.validate()?;
        let id = crate::session::record_id(&args.record_id)?;
        self.vault
            .run(move |v| {
                let rec = v.get_record(&id)?;
                files::read(v, &rec, args.index)
            })
            .await
    }

    /// Adds a record entered by hand (signed by this device) and returns its id.
    pub async fn add_record(&self, args: ipc::ManualRecord) -> Result<String> {
        args.validate()?;
        let resource = manual_resource(&args);
        let id = self
            .vault
            .run(move |v| {
                let id = v.add_record(resource)?;
                v.log_event(&AuditEvent::RecordAdded { record: id })?;
                Ok(id.to_string())
            })
            .await?;
        // Records are backed up on their own too, a few seconds after the last change.
        self.schedule_backup();
        Ok(id)
    }

    /// Imports a FHIR Bundle or NDJSON file in one transaction (all or nothing), reporting
    /// progress under `op` and cancellable with it.
    pub async fn import_file(&self, args: ipc::ImportFile) -> Result<ImportReport> {
        args.validate()?;
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let cancel = op.cancel.clone();
        let path = std::path::PathBuf::from(&args.path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "import".to_owned());
        let report = self
            .vault
            .run(move |v| {
                let meta = std::fs::metadata(&path)
                    .map_err(|_| AppError::invalid_input("file: cannot be read"))?;
                if !meta.is_file() || meta.len() > validate::IMPORT_MAX_BYTES {
                    return Err(AppError::invalid_input(
                        "file: must be a FHIR file of at most 512 MiB",
                    ));
                }
                let bytes = zeroize::Zeroizing::new(
                    std::fs::read(&path)
                        .map_err(|_| AppError::invalid_input("file: cannot be read"))?,
                );
                let kind = validate::import_file(&bytes)?;
                let mut progress = |p: carekey_vault::ImportProgress| {
                    sink.report_raw("importing", p.done as u64, p.total as u64);
                };
                let mut ctl = ImportControl {
                    progress: Some(&mut progress),
                    cancel: Some(cancel.flag()),
                };
                let opts = ImportOptions {
                    source: Some(name.clone()),
                    share: None,
                };
                let report = match kind {
                    validate::ImportKind::Bundle => v.import_bundle(&bytes, &opts, &mut ctl)?,
                    validate::ImportKind::Ndjson => v.import_ndjson(
                        &[NdjsonFile {
                            name: name.clone(),
                            data: bytes.to_vec(),
                        }],
                        &opts,
                        &mut ctl,
                    )?,
                };
                Ok(report)
            })
            .await?;
        drop(op);
        self.schedule_backup();
        Ok(report)
    }

    /// Imports FHIR data already read into memory (the CLI reads its files itself, to report a
    /// bad one by file and position) in one transaction, like [`Self::import_file`]. `source`
    /// labels the records' provenance ("imported from …").
    pub async fn import_data(&self, source: String, data: ImportData) -> Result<ImportReport> {
        validate::text("source", &source, validate::NAME_MAX_CHARS)?;
        if let ImportData::Bundle(bytes) = &data
            && validate::import_file(bytes)? != validate::ImportKind::Bundle
        {
            return Err(AppError::invalid_input("file: not a FHIR Bundle"));
        }
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let cancel = op.cancel.clone();
        let report = self
            .vault
            .run(move |v| {
                let mut progress = |p: carekey_vault::ImportProgress| {
                    sink.report_raw("importing", p.done as u64, p.total as u64);
                };
                let mut ctl = ImportControl {
                    progress: Some(&mut progress),
                    cancel: Some(cancel.flag()),
                };
                let opts = ImportOptions {
                    source: Some(source),
                    share: None,
                };
                Ok(match &data {
                    ImportData::Bundle(bytes) => v.import_bundle(bytes, &opts, &mut ctl)?,
                    ImportData::Ndjson(files) => v.import_ndjson(files, &opts, &mut ctl)?,
                })
            })
            .await?;
        drop(op);
        self.schedule_backup();
        Ok(report)
    }
}

/// The FHIR R4 resource of a hand-entered record (the form's fields, nothing invented).
fn manual_resource(r: &ipc::ManualRecord) -> serde_json::Value {
    use serde_json::json;
    match r {
        ipc::ManualRecord::Condition { text, onset } => {
            let mut v = json!({"resourceType": "Condition", "code": {"text": text},
                "clinicalStatus": {"coding": [{"system":
                    "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}});
            if let Some(d) = onset {
                v["onsetDateTime"] = json!(d);
            }
            v
        }
        ipc::ManualRecord::Medication { text, dosage } => {
            let mut v = json!({"resourceType": "MedicationStatement", "status": "active",
                "medicationCodeableConcept": {"text": text}});
            if let Some(d) = dosage {
                v["dosage"] = json!([{"text": d}]);
            }
            v
        }
        ipc::ManualRecord::Allergy { text, reaction } => {
            let mut v = json!({"resourceType": "AllergyIntolerance", "code": {"text": text}});
            if let Some(x) = reaction {
                v["reaction"] = json!([{"manifestation": [{"text": x}]}]);
            }
            v
        }
        ipc::ManualRecord::Immunization { text, date } => json!({
            "resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": text}, "occurrenceDateTime": date}),
        ipc::ManualRecord::Measurement {
            text,
            value,
            unit,
            date,
        } => json!({"resourceType": "Observation", "status": "final",
            "code": {"text": text}, "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": unit}}),
    }
}
