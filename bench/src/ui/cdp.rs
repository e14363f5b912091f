//! Headless Chromium driven over the DevTools protocol on `--remote-debugging-pipe` (the same
//! way as tests/e2e/browser.py): NUL-separated JSON on fds 3 and 4, moved there by `sh`, read
//! by a thread into a channel so every wait has a deadline.
//!
//! What the benchmark needs is one measurement: load a URL in a tab and read, from the page's
//! own clock, when navigation started, when the response began, and when the app marked itself
//! hydrated (`<body data-hydrated="1">`, set by the UI's App once the wasm has taken over;
//! watched by a MutationObserver installed before any page script runs).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{BenchError, Result};

const FLAGS: [&str; 13] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
];

const WATCH: &str = r#"(() => {
  const mark = () => {
    if (window.__lookoutHydratedAt === undefined && document.body
        && document.body.dataset.hydrated === "1") {
      window.__lookoutHydratedAt = performance.now();
    }
  };
  new MutationObserver(mark).observe(document, {
    attributes: true, subtree: true, attributeFilter: ["data-hydrated"],
  });
})();"#;

const READ_TIMING: &str = r#"(() => {
  const n = performance.getEntriesByType("navigation")[0];
  return {
    href: location.href,
    hydrated: window.__lookoutHydratedAt === undefined ? null : window.__lookoutHydratedAt,
    ttfb: n ? n.responseStart : null,
    load: n ? n.loadEventEnd : null,
  };
})()"#;

/// One page load, in milliseconds since its navigation started.
#[derive(Clone, Copy, Debug)]
pub struct LoadTiming {
    /// First byte of the HTML.
    pub ttfb_ms: f64,
    /// The app marked the page hydrated: interactive.
    pub interactive_ms: f64,
}

pub struct Chromium {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: u64,
    session: String,
    profile: PathBuf,
    log: PathBuf,
    /// Console errors and uncaught exceptions seen so far.
    pub errors: Vec<String>,
    loads: u64,
}

fn err(reason: impl Into<String>) -> BenchError {
    BenchError::Server {
        server: "chromium".into(),
        reason: reason.into(),
    }
}

impl Chromium {
    /// Starts `bin` (e.g. `chromium`) with a fresh profile under `work` and opens one tab of
    /// `width` x `height`.
    pub fn launch(bin: &str, work: &Path, width: u32, height: u32) -> Result<Self> {
        let profile = work.join("chromium-profile");
        if profile.exists() {
            std::fs::remove_dir_all(&profile).map_err(|e| BenchError::io(&profile, e))?;
        }
        std::fs::create_dir_all(&profile).map_err(|e| BenchError::io(&profile, e))?;
        let log = work.join("chromium.log");
        let log_file = std::fs::File::create(&log).map_err(|e| BenchError::io(&log, e))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(bin)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().map_err(|e| BenchError::Spawn {
            server: "chromium".into(),
            command: bin.into(),
            source: e,
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(err("no pipes to the browser"));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(v).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut c = Chromium {
            child,
            stdin,
            rx,
            next_id: 0,
            session: String::new(),
            profile,
            log,
            errors: Vec::new(),
            loads: 0,
        };
        let target = c.call("Target.createTarget", json!({"url": "about:blank"}), false)?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        let attached = c.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
            false,
        )?;
        c.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| err("attachToTarget gave no session"))?
            .to_string();
        c.call("Page.enable", json!({}), true)?;
        c.call("Runtime.enable", json!({}), true)?;
        c.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": WATCH }),
            true,
        )?;
        c.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            true,
        )?;
        Ok(c)
    }

    pub fn version(&mut self) -> Result<String> {
        let v = self.call("Browser.getVersion", json!({}), false)?;
        Ok(v["product"].as_str().unwrap_or_default().to_string())
    }

    fn write(&mut self, msg: &Value) -> Result<()> {
        let mut bytes = serde_json::to_vec(msg)?;
        bytes.push(0);
        self.stdin
            .write_all(&bytes)
            .and_then(|_| self.stdin.flush())
            .map_err(|e| {
                err(format!(
                    "writing to the browser: {e}; see {}",
                    self.log.display()
                ))
            })
    }

    /// Handles an event: counts loads, keeps errors.
    fn event(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("Page.loadEventFired") => self.loads += 1,
            Some("Runtime.exceptionThrown") => {
                let d = &v["params"]["exceptionDetails"];
                let text = d["exception"]["description"]
                    .as_str()
                    .or(d["text"].as_str())
                    .unwrap_or("exception");
                self.errors.push(format!("uncaught: {text}"));
            }
            Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                let args = v["params"]["args"].as_array().cloned().unwrap_or_default();
                let text: Vec<String> = args
                    .iter()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map(str::to_string)
                            .or_else(|| a["description"].as_str().map(str::to_string))
                            .unwrap_or_default()
                    })
                    .collect();
                self.errors
                    .push(format!("console.error: {}", text.join(" ")));
            }
            _ => {}
        }
    }

    fn next_message(&mut self, deadline: Instant, what: &str) -> Result<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Timeout) => Err(err(format!("no answer to {what} in time"))),
            Err(RecvTimeoutError::Disconnected) => Err(err(format!(
                "the browser exited; see {}",
                self.log.display()
            ))),
        }
    }

    /// One command; its result, or the protocol's error.
    pub fn call(&mut self, method: &str, params: Value, in_tab: bool) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if in_tab {
            msg["sessionId"] = json!(self.session);
        }
        self.write(&msg)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.next_message(deadline, method)?;
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    return Err(err(format!("{method}: {e}")));
                }
                return Ok(v["result"].clone());
            }
            self.event(&v);
        }
    }

    fn evaluate(&mut self, expr: &str) -> Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
            true,
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(err(format!("evaluating {expr}: {e}")));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Loads `url` and waits (up to `timeout`) for the app's hydration mark.
    pub fn load(&mut self, url: &str, timeout: Duration) -> Result<LoadTiming> {
        let deadline = Instant::now() + timeout;
        let loads = self.loads;
        let nav = self.call("Page.navigate", json!({ "url": url }), true)?;
        if let Some(e) = nav["errorText"].as_str() {
            return Err(err(format!("loading {url}: {e}")));
        }
        // the load event of this navigation: from then on the tab shows the new document
        while self.loads == loads {
            let v = self.next_message(deadline, "the load event")?;
            self.event(&v);
        }
        loop {
            let t = self.evaluate(READ_TIMING)?;
            if t["href"].as_str() != Some(url) {
                return Err(err(format!("{url} ended at {}", t["href"])));
            }
            if let (Some(h), Some(ttfb)) = (t["hydrated"].as_f64(), t["ttfb"].as_f64()) {
                return Ok(LoadTiming {
                    ttfb_ms: ttfb,
                    interactive_ms: h,
                });
            }
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "{url} not hydrated within {timeout:?}; errors: {:?}",
                    self.errors
                )));
            }
            // drain events (errors) while waiting
            if let Ok(v) = self.rx.recv_timeout(Duration::from_millis(10)) {
                self.event(&v);
            }
        }
    }

    /// Closes the browser and removes its profile.
    pub fn close(mut self) {
        let _ = self.write(&json!({"id": u64::MAX, "method": "Browser.close", "params": {}}));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
