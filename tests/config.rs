//! Runs the real binary over the config fixtures in `testdata/config/` and the documented
//! example `deploy/lookout.example.yaml`, and checks that secrets never print: not in
//! check-config output, not in `serve`'s logs.
//!
//! Bad fixtures declare what they expect on comment lines: `# expect: LINE: text`, meaning
//! one output line `FILE:LINE: ...text...`, or `# expect: PATH:LINE: text` for an error in
//! a file the fixture names (a rule file, `PATH` relative to the fixture's directory). The
//! output must have exactly those lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures(suffix: &str) -> Vec<PathBuf> {
    let dir = root().join("testdata/config");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "no *{suffix} fixtures in {}",
        dir.display()
    );
    out
}

fn dir_of(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn check_config(path: &Path) -> Output {
    Command::new(BIN)
        .args(["check-config", &path.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn good_configs_and_the_documented_example_pass() {
    let mut files = fixtures(".good.yaml");
    files.push(root().join("deploy/lookout.example.yaml"));
    for file in files {
        let out = check_config(&file);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} should be valid:\n{}",
            file.display(),
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout),
            format!("{}: config is valid\n", file.display())
        );
    }
}

#[test]
fn bad_configs_report_every_expected_error_with_its_line() {
    for file in fixtures(".bad.yaml") {
        let source = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        let expected: Vec<(String, String)> = source
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .filter_map(|l| l.split_once(": "))
            .map(|(line, msg)| (line.to_string(), msg.to_string()))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} declares no `# expect:` line",
            file.display()
        );
        let out = check_config(&file);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} should fail:\n{stderr}",
            file.display()
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            expected.len(),
            "{}: expected {} error lines, got:\n{stderr}",
            file.display(),
            expected.len()
        );
        for (line, msg) in &expected {
            // `LINE` is a line of the fixture; `PATH:LINE` one of a file beside it (a rule
            // file), reported under its own name
            let prefix = match line.rsplit_once(':') {
                Some((path, line)) => format!("{}:{line}: ", dir_of(&file).join(path).display()),
                None => format!("{}:{line}: ", file.display()),
            };
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&prefix) && l.contains(msg.as_str())),
                "{}: no error line `{prefix}...{msg}...` in:\n{stderr}",
                file.display()
            );
        }
    }
}

#[test]
fn missing_file_is_named() {
    let out = check_config(Path::new("/nonexistent/lookout.yaml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("/nonexistent/lookout.yaml: cannot read config file"));
}

const SECRETS: [&str; 4] = [
    "tok-ingest-5f1e",
    "tok-query-9a7c",
    "pw-smtp-3b2d",
    "tok-env-8c4a",
];

fn secret_config(dir: &Path) -> PathBuf {
    let path = dir.join("lookout.yaml");
    let body = format!(
        "server:\n  http_addr: 127.0.0.1:0\n  otlp_grpc_addr: 127.0.0.1:0\n  otlp_http_addr: 127.0.0.1:0\n  auth:\n    ingest_tokens: [{}]\n    query_tokens: [{}]\nstorage:\n  data_dir: {}\nalerting:\n  route: {{ receiver: mail }}\n  receivers:\n    - name: mail\n      email_configs: [{{ to: a@example.com, from: lookout@example.com, smarthost: \"127.0.0.1:1\", auth_username: u, auth_password: {} }}]\n",
        SECRETS[0],
        SECRETS[1],
        dir.join("data").display(),
        SECRETS[2]
    );
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
    path
}

#[test]
fn secrets_never_print_in_check_config() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("bad.yaml");
    // wrong shapes make serde quote the offending values
    std::fs::write(
        &path,
        format!(
            "server:\n  auth:\n    ingest_tokens: {}\n    query_tokens: {{ a: {} }}\n",
            SECRETS[0], SECRETS[1]
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = check_config(&path);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for s in SECRETS {
        assert!(!all.contains(s), "secret {s} printed:\n{all}");
    }
}

/// Kills the server if the test fails before stopping it, so no process outlives the test.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw HTTP/1.1 GET; returns the status code.
fn http_get(addr: &str, path: &str, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting {addr}: {e}"));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut resp = String::new();
    let _ = stream.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn secrets_never_print_in_serve_logs_and_auth_guards_endpoints() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = secret_config(dir.path());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            &config.display().to_string(),
            "--log-level",
            "debug",
        ])
        .env(
            "LOOKOUT_INGEST_TOKENS",
            format!("{},{}", SECRETS[0], SECRETS[3]),
        )
        .env_remove("LOOKOUT_QUERY_TOKENS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {BIN}: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let pid = child.id();
    let mut guard = KillOnDrop(Some(child));
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let mut http_addr = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line.contains("listening") && line.contains("service=\"http\"") {
            http_addr = line.split("addr=").nth(1).map(|a| a.trim().to_string());
        }
        let ready = line.contains(" ready ");
        log.push(line);
        if ready {
            break;
        }
    }
    let addr = http_addr.unwrap_or_else(|| panic!("no http listening line:\n{}", log.join("\n")));
    assert_eq!(http_get(&addr, "/-/healthy", None), 200);
    assert_eq!(http_get(&addr, "/-/ready", None), 200);
    assert_eq!(http_get(&addr, "/api/v1/labels", None), 401);
    assert_eq!(http_get(&addr, "/api/v1/labels", Some("wrong")), 401);
    assert_eq!(http_get(&addr, "/api/v1/labels", Some(SECRETS[1])), 200);
    assert_eq!(http_get(&addr, "/metrics", None), 401);
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("sending SIGTERM: {e}"));
    assert!(status.success());
    let mut child = guard
        .0
        .take()
        .unwrap_or_else(|| panic!("server already reaped"));
    let exit = child.wait().unwrap_or_else(|e| panic!("{e}"));
    let _ = reader.join();
    log.extend(rx.try_iter());
    let all = log.join("\n");
    assert_eq!(exit.code(), Some(0), "exit on SIGTERM:\n{all}");
    assert!(all.contains("store flushed and closed"), "{all}");
    for s in SECRETS {
        assert!(!all.contains(s), "secret {s} in logs:\n{all}");
    }
}
