//! The WebKit end-to-end harness both app shells' tests include (`#[path]`): processes that
//! stop on drop (tauri-driver with SIGTERM so WebKitWebDriver goes too), a real relay process,
//! one WebDriver session per app, DOM helpers, screenshots, axe-core, and RSS of an app's
//! process tree. Not a crate: the test files include it so each keeps one binary.
//!
//! Skips: `skip(why)` prints `skipped: …`, and panics when `CAREKEY_REQUIRE_WEBKIT=1` (CI).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

pub fn required() -> bool {
    std::env::var_os("CAREKEY_REQUIRE_WEBKIT").is_some_and(|v| v == "1")
}

pub fn skip(why: &str) {
    assert!(!required(), "CAREKEY_REQUIRE_WEBKIT=1 but {why}");
    eprintln!("skipped: {why}");
}

pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process ended on drop (tauri-driver with SIGTERM, so it stops WebKitWebDriver).
pub struct Proc(pub Child, pub bool);

impl Drop for Proc {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_relay(bin: &Path, data: &Path) -> (Proc, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--origin", &url])
        .args(["--sweep-secs", "1", "--data"])
        .arg(data)
        .stdout(Stdio::null())
        // `CAREKEY_E2E_RELAY_LOG=FILE`: the relay's request log (routes, statuses, latencies;
        // never bodies), to see the relay's share of an app's figure.
        .stderr(
            std::env::var_os("CAREKEY_E2E_RELAY_LOG")
                .and_then(|f| std::fs::File::create(f).ok())
                .map_or_else(Stdio::null, Stdio::from),
        )
        .spawn()
        .expect("relay starts");
    let p = Proc(child, false);
    wait_port(port, "the relay");
    (p, url)
}

pub struct Ui {
    pub c: Client,
    pub shots: PathBuf,
    pub axe: String,
    pub axe_failures: Vec<String>,
}

impl Ui {
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.c.execute(script, args).await.expect("execute")
    }

    /// Polls `script` (a function body returning a value) until it is truthy.
    pub async fn until(&self, what: &str, secs: u64, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.js(script, vec![]).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() > deadline {
                let banner = self
                    .js(
                        "const e=document.querySelector('[data-testid=error]');return e?e.textContent:null",
                        vec![],
                    )
                    .await;
                let _ = self
                    .shot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!("timed out waiting for {what} (error banner: {banner})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn present(&self, css: &str, secs: u64) {
        let s = format!("return !!document.querySelector({})", json!(css));
        self.until(css, secs, &s).await;
    }

    pub async fn click(&self, css: &str) {
        self.present(css, 20).await;
        self.js(
            "const e=document.querySelector(arguments[0]); e.scrollIntoView(); e.click(); return true",
            vec![json!(css)],
        )
        .await;
    }

    pub async fn fill(&self, css: &str, value: &str) {
        self.present(css, 20).await;
        self.js(
            "const e=document.querySelector(arguments[0]); e.focus(); e.value=arguments[1];
             e.dispatchEvent(new Event('input',{bubbles:true}));
             e.dispatchEvent(new Event('change',{bubbles:true})); return true",
            vec![json!(css), json!(value)],
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.present(css, 20).await;
        self.js(
            "return document.querySelector(arguments[0]).textContent",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned()
    }

    pub async fn shot(&self, name: &str) -> Vec<u8> {
        let png = self.c.screenshot().await.expect("screenshot");
        let _ = std::fs::write(self.shots.join(format!("{name}.png")), &png);
        png
    }

    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.js(
            "return (window.__carekeyMetrics||{})[arguments[0]] ?? null",
            vec![json!(name)],
        )
        .await
        .as_f64()
    }

    /// Milliseconds from the start of process `pid` (the kernel's start time) to the moment the
    /// page marked `name` with `metric(name, performance.now())`: the app's own start-up,
    /// without tauri-driver, WebKitWebDriver and this harness's polling, which the time around
    /// `session()` includes.
    ///
    /// Also prints how much of it came before the page started loading (the shell, GTK and
    /// WebKit starting their processes).
    pub async fn since_process_start(&self, pid: u32, name: &str) -> Option<f64> {
        let marks = self
            .js(
                "const m=(window.__carekeyMetrics||{})[arguments[0]];return m==null?null:[performance.timeOrigin,m]",
                vec![json!(name)],
            )
            .await;
        let (origin, mark) = (marks.get(0)?.as_f64()?, marks.get(1)?.as_f64()?);
        let started = process_started_unix_ms(pid)?;
        eprintln!(
            "{name}: {:.0} ms before the page started loading, {mark:.0} ms in the page",
            origin - started
        );
        Some(origin + mark - started)
    }

    /// [`Ui::since_process_start`] of the newest process running `bin` to its unlock screen
    /// (`unlock_screen_ms`, marked when the form is in the document).
    pub async fn start_to_unlock_ms(&self, bin: &Path) -> f64 {
        let pid = app_pid(bin).unwrap_or_else(|| panic!("no process runs {}", bin.display()));
        self.since_process_start(pid, "unlock_screen_ms")
            .await
            .expect("the unlock screen marks unlock_screen_ms")
    }

    /// axe-core on the current screen; serious and critical violations are collected.
    pub async fn axe(&mut self, screen: &str) {
        if self.axe.is_empty() {
            return;
        }
        let injected = self
            .js("return typeof window.axe !== 'undefined'", vec![])
            .await;
        if injected != json!(true) {
            self.js(&format!("{};return true", self.axe), vec![]).await;
        }
        let r = self
            .c
            .execute_async(
                "const done=arguments[arguments.length-1];
                 axe.run(document,{resultTypes:['violations']}).then(r=>done(r.violations
                   .filter(v=>v.impact==='serious'||v.impact==='critical')
                   .map(v=>v.id+': '+v.help+' ['+v.nodes.slice(0,3).map(n=>n.target.join(' ')).join(' | ')+']')))
                 .catch(e=>done(['axe failed: '+e]))",
                vec![],
            )
            .await
            .expect("axe");
        let v: Vec<String> = serde_json::from_value(r).unwrap_or_default();
        eprintln!("axe {screen}: {} serious/critical", v.len());
        for x in v {
            self.axe_failures.push(format!("{screen}: {x}"));
        }
    }
}

pub async fn session(driver: &str, app: &Path, data: &Path, relay: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "tauri:options".into(),
        json!({"application": app, "args": ["--data-dir", data, "--relay-url", relay]}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(driver)
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("session not yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("WebDriver session: {e}"),
        }
    }
}

/// Memory of this app's processes: the shell and WebKit's web and network processes under it.
#[derive(Debug, Default)]
pub struct Memory {
    /// Sum of each process's resident set. Pages shared between the processes (WebKit's
    /// libraries are mapped in all three) count once per process, so this overstates.
    pub rss_mb: f64,
    /// Sum of each process's proportional set size (`/proc/PID/smaps_rollup`): a page shared
    /// by n processes counts 1/n in each, so the sum is what the app costs the machine.
    pub pss_mb: f64,
    /// Per process: executable name, RSS MiB, PSS MiB, anonymous (not file-backed) MiB.
    pub processes: Vec<(String, f64, f64, f64)>,
}

impl Memory {
    /// One line per process (names and sizes only), for the test's log.
    pub fn print(&self, app: &str) {
        for (name, rss, pss, anon) in &self.processes {
            println!(
                "  {app} memory: {name}: rss {rss:.0} MiB, pss {pss:.0} MiB, anon {anon:.0} MiB"
            );
        }
    }
}

/// The parent of process `pid` (field 4 of `/proc/PID/stat`, after the name's closing paren).
fn parent(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and every process descended from it (WebKit's web and network processes of an app).
pub fn process_tree(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..8 {
                if p == root {
                    return true;
                }
                match parent(p) {
                    Some(q) if q > 1 => p = q,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Waits up to `secs` for every process of `pids` to exit; whether they all did. A restart
/// measured while the previous instance is still tearing down its WebKit processes measures
/// the teardown too, on a 2-core machine.
pub async fn wait_gone(pids: &[u32], secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        // A zombie keeps its /proc entry until reaped; it holds no CPU or memory.
        let alive = pids.iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, a)| a.trim_start().starts_with('Z'))
                })
                == Some(false)
        });
        if !alive {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The [`Memory`] of `root` and its descendants.
pub fn memory(root: u32) -> Memory {
    let mut m = Memory::default();
    // "Name:   123 kB" lines of /proc files, in MiB.
    let field = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0) as f64
            / 1024.0
    };
    for pid in process_tree(root) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .map_or_else(|| "?".to_owned(), |n| n.trim().to_owned());
        let (rss, pss, anon) = (
            field(&status, "VmRSS:"),
            field(&rollup, "Pss:"),
            field(&rollup, "Anonymous:"),
        );
        m.rss_mb += rss;
        m.pss_mb += pss;
        m.processes.push((name, rss, pss, anon));
    }
    m
}

/// When process `pid` started, in Unix milliseconds (10 ms resolution). `/proc/PID/stat`
/// field 22 counts clock ticks (USER_HZ, 100 on Linux) since boot, `/proc/uptime` seconds since
/// boot, both on the boot-time clock.
pub fn process_started_unix_ms(pid: u32) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the state is
    // field 3, so the start time (field 22) is the 20th after the parenthesis.
    let ticks: f64 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some((now - (uptime - ticks / USER_HZ)) * 1000.0)
}

/// The process running `bin`; the newest when several do (an app closed a moment ago may not
/// have exited yet).
pub fn app_pid(bin: &Path) -> Option<u32> {
    let mut newest: Option<(f64, u32)> = None;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .as_deref()
            == Some(bin)
        {
            let started = process_started_unix_ms(pid).unwrap_or(0.0);
            if newest.is_none_or(|(t, _)| started > t) {
                newest = Some((started, pid));
            }
        }
    }
    newest.map(|(_, pid)| pid)
}

/// tauri-driver on a fresh port pair; returns the process and its URL.
pub fn start_driver() -> (Proc, String) {
    start_driver_env(&[])
}

/// [`start_driver`] with extra environment for the apps it starts.
pub fn start_driver_env(env: &[(&str, &str)]) -> (Proc, String) {
    let port = free_port();
    let native = free_port();
    let driver = Proc(
        Command::new("tauri-driver")
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tauri-driver"),
        true,
    );
    wait_port(port, "tauri-driver");
    (driver, format!("http://127.0.0.1:{port}"))
}

/// axe-core's script from node_modules (empty when `npm ci` has not run).
pub fn axe_script() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../node_modules/axe-core/axe.min.js");
    let axe = std::fs::read_to_string(&path).unwrap_or_default();
    if axe.is_empty() {
        eprintln!("axe-core not installed (npm ci): accessibility checks skipped");
    }
    axe
}

/// Whether the shell at `bin` can run here (tools, display, binary, built UI); the reason
/// when not.
pub fn cannot_run(bins: &[&Path], ui_dists: &[&str]) -> Option<String> {
    if !on_path("tauri-driver") || !on_path("WebKitWebDriver") {
        return Some("tauri-driver and WebKitWebDriver must be on PATH".into());
    }
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return Some("no display (run under xvfb-run -a)".into());
    }
    for b in bins {
        if !b.is_file() {
            return Some(format!(
                "{} is not built (cargo build -p carekey-relay -p carekey-patient -p carekey-doctor)",
                b.display()
            ));
        }
    }
    for d in ui_dists {
        let index =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../{d}/dist/index.html"));
        if std::fs::read_to_string(&index).map_or(true, |s| s.contains("UI is not built")) {
            return Some(format!(
                "the {d} is not built (npm ci && npm run build, then cargo build the apps)"
            ));
        }
    }
    None
}
