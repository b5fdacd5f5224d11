//! `carekey-demo` (run by `scripts/demo`, README "Demo"): starts a relay on its embedded
//! SQLite default, makes a demo patient with the project's own code
//! ([`carekey_app::demo::patient_bundle`], or `--import FILE` for a real FHIR export), runs one
//! check-up headless so the doctor already has the patient, then opens both apps side by side,
//! unlocked. Ctrl-C stops the apps and the relay and leaves no process behind.
//!
//! `--smoke` (CI): opens the apps through tauri-driver instead, checks that the patient's
//! records and the doctor's chart of the demo patient are on screen, saves screenshots to
//! `target/demo-screenshots/`, and exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carekey_app::events::NoEvents;
use carekey_app::ipc::{self, PolicyChoice, ShareCategory};
use carekey_app::session::{AppConfig, DoctorApp, PatientApp};
use serde_json::json;

#[path = "../../e2e/webkit.rs"]
mod webkit;
use webkit::{Proc, Ui, free_port, session, start_relay, wait_port};

/// The demo vaults' passphrase (printed; the vaults are throwaway).
const DEMO_PASSPHRASE: &str = "carekey demo passphrase";
/// What the apps read to open unlocked (`carekey_patient::DEMO_PASSPHRASE_ENV`).
const DEMO_PASSPHRASE_ENV: &str = "CAREKEY_DEMO_PASSPHRASE";

struct Args {
    import: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    smoke: bool,
}

fn usage() -> ! {
    eprintln!("usage: carekey-demo [--import FILE] [--data-dir DIR] [--smoke]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        import: None,
        data_dir: None,
        smoke: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--import" => a.import = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--data-dir" => {
                a.data_dir = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage()))
            }
            "--smoke" => a.smoke = true,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    a
}

fn fail(msg: &str) -> ! {
    eprintln!("carekey-demo: {msg}");
    std::process::exit(1)
}

/// Creates both vaults, imports the patient's records and runs one check-up (every category,
/// 7 days, forwarding "ask me"). Returns the number of shared records.
async fn set_up(dir: &Path, relay_url: &str, import: Option<&Path>) -> Result<usize, String> {
    let e = |what: &str| {
        let what = what.to_owned();
        move |err: carekey_app::AppError| format!("{what}: {}", err.message)
    };
    let patient = PatientApp::new(AppConfig::in_dir(&dir.join("patient")), Arc::new(NoEvents));
    let doctor = DoctorApp::new(AppConfig::in_dir(&dir.join("doctor")), Arc::new(NoEvents));
    let vault = |name: &str, licence: Option<&str>| ipc::CreateVault {
        passphrase: DEMO_PASSPHRASE.into(),
        name: name.into(),
        licence: licence.map(str::to_owned),
        relay_url: relay_url.into(),
    };
    patient
        .create_vault(vault(carekey_app::demo::DEMO_PATIENT, None))
        .await
        .map_err(e("patient vault"))?;
    doctor
        .create_vault(vault(carekey_app::demo::DEMO_DOCTOR, Some("DEMO-0001")))
        .await
        .map_err(e("doctor vault"))?;
    let file = match import {
        Some(f) => f.to_path_buf(),
        None => {
            let f = dir.join("demo-patient.json");
            let bytes = serde_json::to_vec_pretty(&carekey_app::demo::patient_bundle())
                .map_err(|_| "the demo bundle".to_owned())?;
            std::fs::write(&f, bytes).map_err(|err| format!("write {}: {err}", f.display()))?;
            f
        }
    };
    let report = patient
        .import_file(ipc::ImportFile {
            path: file.to_string_lossy().into_owned(),
        })
        .await
        .map_err(e("import"))?;
    eprintln!("imported {} records", report.records);
    let started = patient
        .start_share(ipc::StartShare {
            categories: vec![
                ShareCategory::Allergies,
                ShareCategory::Conditions,
                ShareCategory::Medications,
                ShareCategory::Immunizations,
                ShareCategory::Procedures,
                ShareCategory::Observations,
                ShareCategory::Documents,
                ShareCategory::Encounters,
            ],
            records: Vec::new(),
            expires_in_secs: 7 * 86_400,
            policy: PolicyChoice::Ask,
            depth: 0,
        })
        .await
        .map_err(e("share"))?;
    let scan = doctor
        .scan_text(ipc::ScanText {
            text: started.qr_text.clone(),
        })
        .await
        .map_err(e("scan"))?;
    patient
        .wait_for_doctor(ipc::Wait {
            id: started.pairing.clone(),
            wait_secs: 30,
        })
        .await
        .map_err(e("the doctor's scan"))?;
    patient
        .answer_doctor(ipc::AnswerDoctor {
            id: started.pairing,
            accept: true,
            categories: None,
        })
        .await
        .map_err(e("confirm"))?;
    let link = doctor
        .wait_for_grant(ipc::Wait {
            id: scan.scan,
            wait_secs: 30,
        })
        .await
        .map_err(e("grant"))?;
    let view = doctor
        .refresh_patient(ipc::IdRef { id: link })
        .await
        .map_err(e("fetch"))?;
    patient.lock().await;
    doctor.lock().await;
    Ok(view.records)
}

fn app(bin: &Path, data: &Path, relay_url: &str) -> Proc {
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(["--relay-url", relay_url])
        .env(DEMO_PASSPHRASE_ENV, DEMO_PASSPHRASE)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| fail(&format!("start {}: {err}", bin.display())));
    Proc(child, true)
}

fn driver() -> (Proc, String) {
    let port = free_port();
    let native = free_port();
    let child = Command::new("tauri-driver")
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .env(DEMO_PASSPHRASE_ENV, DEMO_PASSPHRASE)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| fail(&format!("tauri-driver: {err} (cargo install tauri-driver)")));
    let p = Proc(child, true);
    wait_port(port, "tauri-driver");
    (p, format!("http://127.0.0.1:{port}"))
}

/// `--smoke`: both apps through tauri-driver; the demo patient must be on both screens, and
/// (without `--import`) the doctor app draws the demo's PDF letter with pdf.js under the
/// app's CSP.
async fn smoke(
    bins: &Bins,
    dir: &Path,
    relay_url: &str,
    shared: usize,
    shots: &Path,
    demo_patient: bool,
) {
    let (_pd, purl) = driver();
    let (_dd, durl) = driver();
    let mk = |c| Ui {
        c,
        shots: shots.to_path_buf(),
        axe: String::new(),
        axe_failures: Vec::new(),
    };
    let pat = mk(session(&purl, &bins.patient, &dir.join("patient"), relay_url).await);
    let doc = mk(session(&durl, &bins.doctor, &dir.join("doctor"), relay_url).await);
    pat.until(
        "the patient's records",
        60,
        "return Number(document.querySelector('[data-testid=timeline]')?.dataset.count||0)",
    )
    .await;
    pat.shot("patient").await;
    doc.click("[data-testid=patient-row]").await;
    let count = doc
        .until(
            "the doctor's chart",
            60,
            "const e=document.querySelector('[data-testid=chart-count]');return e?Number(e.textContent):null",
        )
        .await;
    assert_eq!(count, json!(shared), "the chart holds the shared records");
    let name = doc.text("[data-testid=chart-name]").await;
    assert_eq!(name, carekey_app::demo::DEMO_PATIENT);
    doc.click("[data-section=vitals]").await;
    doc.present("svg", 20).await;
    doc.shot("doctor").await;
    if demo_patient {
        doc.click("[data-section=documents]").await;
        doc.click("button.file[data-kind=pdf]").await;
        doc.until(
            "the clinic letter drawn by pdf.js",
            60,
            "const e=document.querySelector('[data-testid=pdf-pages]');return e?Number(e.dataset.drawn):null",
        )
        .await;
        let text = doc.text("[data-testid=pdf-text]").await;
        assert!(
            text.contains("Blood pressure has improved"),
            "the letter's text is read out of the PDF"
        );
        doc.shot("doctor-letter").await;
    }
    eprintln!(
        "smoke: both apps show {name} ({shared} shared records); screenshots in {}",
        shots.display()
    );
    let _ = pat.c.close().await;
    let _ = doc.c.close().await;
}

struct Bins {
    relay: PathBuf,
    patient: PathBuf,
    doctor: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let exe = std::env::current_exe().unwrap_or_else(|_| fail("cannot find this program's path"));
    let bin_dir = exe
        .parent()
        .unwrap_or_else(|| fail("no bin dir"))
        .to_path_buf();
    let bins = Bins {
        relay: bin_dir.join("carekey-relay"),
        patient: bin_dir.join("carekey-patient"),
        doctor: bin_dir.join("carekey-doctor"),
    };
    for b in [&bins.relay, &bins.patient, &bins.doctor] {
        if !b.is_file() {
            fail(&format!(
                "{} is missing: run scripts/demo (it builds the relay and both apps)",
                b.display()
            ));
        }
    }
    if let Some(f) = &a.import
        && !f.is_file()
    {
        fail(&format!("--import: {} is not a file", f.display()));
    }
    let dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| bin_dir.join("../demo-data"));
    // Throwaway: every run starts from a fresh demo.
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["relay", "patient", "doctor"] {
        std::fs::create_dir_all(dir.join(d))
            .unwrap_or_else(|err| fail(&format!("{}: {err}", dir.display())));
    }
    let (relay, relay_url) = start_relay(&bins.relay, &dir.join("relay"));
    eprintln!(
        "relay: {relay_url} (embedded SQLite in {})",
        dir.join("relay").display()
    );
    let t0 = Instant::now();
    let shared = match set_up(&dir, &relay_url, a.import.as_deref()).await {
        Ok(n) => n,
        Err(msg) => fail(&msg),
    };
    eprintln!(
        "demo ready in {:.1} s: {} shared {shared} records with {}",
        t0.elapsed().as_secs_f64(),
        carekey_app::demo::DEMO_PATIENT,
        carekey_app::demo::DEMO_DOCTOR
    );
    if a.smoke {
        let shots = bin_dir.join("../demo-screenshots");
        let _ = std::fs::create_dir_all(&shots);
        smoke(&bins, &dir, &relay_url, shared, &shots, a.import.is_none()).await;
        drop(relay);
        return;
    }
    let patient = app(&bins.patient, &dir.join("patient"), &relay_url);
    let doctor = app(&bins.doctor, &dir.join("doctor"), &relay_url);
    eprintln!(
        "both apps are open (passphrase of both demo vaults: \"{DEMO_PASSPHRASE}\").\n\
         Try: Share on the patient's phone, then Scan → paste code on the doctor's.\n\
         Ctrl-C stops the apps and the relay."
    );
    let mut procs = vec![patient, doctor];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if procs.iter_mut().any(|p| matches!(p.0.try_wait(), Ok(Some(_)))) {
                    eprintln!("an app window was closed: stopping the demo");
                    break;
                }
            }
        }
    }
    procs.clear();
    drop(relay);
    eprintln!("stopped");
}
