//! The checks each shell's own tests run (they pass the shell's files in with
//! `include_str!`), so both shells are held to the same rules: the handler registers exactly the
//! listed commands, every one is an app-layer command, the window's capability grants exactly
//! those and the event stream (no `core:default`), and the config is strict (CSP without
//! `unsafe-*`, no dev server, frozen prototype, a phone-sized window).

/// `generate_handler![…]` in `commands_rs` lists exactly `names`, each in
/// `carekey_app::ipc::COMMANDS`.
pub fn handler_matches(commands_rs: &str, names: &[&str]) {
    for c in names {
        assert!(
            carekey_app::ipc::COMMANDS.iter().any(|(n, _)| n == c),
            "{c} is not in carekey_app::ipc::COMMANDS"
        );
    }
    let start = commands_rs
        .find("generate_handler![")
        .expect("a generate_handler! list")
        + "generate_handler![".len();
    let end = start + commands_rs[start..].find(']').expect("its end");
    let mut handler: Vec<&str> = commands_rs[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut listed = names.to_vec();
    handler.sort_unstable();
    listed.sort_unstable();
    assert_eq!(handler, listed, "handler = COMMAND_NAMES");
}

/// The capability in `capability_json` grants `allow-<command>` for exactly `names`, plus
/// `core:event:allow-listen` / `allow-unlisten`, and nothing else.
pub fn capability_grants_exactly(capability_json: &str, names: &[&str]) {
    let cap: serde_json::Value = serde_json::from_str(capability_json).expect("capability JSON");
    let perms: Vec<&str> = cap["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(!perms.iter().any(|p| p.starts_with("core:default")));
    for c in names {
        let p = format!("allow-{}", c.replace('_', "-"));
        assert!(perms.contains(&p.as_str()), "{p} missing");
    }
    let others: Vec<&&str> = perms.iter().filter(|p| !p.starts_with("allow-")).collect();
    assert_eq!(
        others,
        [&"core:event:allow-listen", &"core:event:allow-unlisten"]
    );
    assert_eq!(perms.len(), names.len() + 2);
}

/// `tauri.conf.json` is strict and names `identifier`.
pub fn config_is_strict(tauri_conf_json: &str, identifier: &str) {
    let conf: serde_json::Value = serde_json::from_str(tauri_conf_json).expect("config JSON");
    assert_eq!(conf["identifier"], identifier);
    assert!(conf["build"].get("devUrl").is_none());
    let sec = &conf["app"]["security"];
    assert_eq!(sec["freezePrototype"], true);
    let csp = &sec["csp"];
    assert_eq!(csp["script-src"], "'self'");
    assert_eq!(csp["object-src"], "'none'");
    assert_eq!(csp["connect-src"], "ipc: http://ipc.localhost");
    let all = csp.to_string();
    assert!(!all.contains("unsafe-inline") && !all.contains("unsafe-eval"));
    let w = &conf["app"]["windows"][0];
    assert_eq!(
        (w["width"].as_u64(), w["height"].as_u64()),
        (Some(390), Some(844))
    );
}
