//! Build script: a placeholder front end when the real one is not built (so `cargo build`,
//! `cargo test` and clippy work without Node), and the app manifest that gives every command
//! its `allow-<command>` permission for `capabilities/main.json`.

use std::path::Path;

include!("src/command_names.rs");

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Carekey</title></head>
<body><main><h1>Carekey</h1>
<p>The doctor UI is not built. Run <code>npm ci &amp;&amp; npm run build -w doctor-ui</code>,
then build this app again.</p></main></body></html>
"#;

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../doctor-ui/dist");
    let index = dist.join("index.html");
    println!("cargo:rerun-if-changed={}", index.display());
    if !index.exists() {
        std::fs::create_dir_all(&dist).expect("create doctor-ui/dist");
        std::fs::write(&index, PLACEHOLDER).expect("write the placeholder index.html");
    }
    let manifest = tauri_build::AppManifest::new().commands(COMMAND_NAMES);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .expect("tauri-build");
}
