"""The command line: --version, --help, check-config reporting every error at once, and
SIGTERM shutting down cleanly with the data flushed."""

from __future__ import annotations

import json
import subprocess

from helpers import lookout_bin, now_ms, remote_write


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [lookout_bin(), *args], capture_output=True, text=True, timeout=timeout
    )


def test_version():
    p = run("--version")
    assert p.returncode == 0, p
    assert p.stdout.startswith("lookout "), p.stdout
    version = p.stdout.split()[1]
    assert version[0].isdigit() and version.count(".") >= 2, p.stdout


def test_help_lists_commands():
    p = run("--help")
    assert p.returncode == 0, p
    assert "serve" in p.stdout and "check-config" in p.stdout, p.stdout
    p = run("serve", "--help")
    assert p.returncode == 0, p
    for flag in ("--config", "--data-dir", "--http-addr", "--otlp-grpc-addr", "--otlp-http-addr"):
        assert flag in p.stdout, (flag, p.stdout)


GOOD_CONFIG = {
    "server": {"http_addr": "127.0.0.1:19800"},
    "global": {"scrape_interval": "15s"},
    "scrape_configs": [
        {"job_name": "app", "static_configs": [{"targets": ["127.0.0.1:9100"]}]},
    ],
    "limits": {"max_labels_per_series": 10},
}

# Several independent mistakes; each must be reported in one run.
BAD_CONFIG = """\
server:
  http_addr: 127.0.0.1:19800
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: dup-job
    static_configs: [{targets: ["127.0.0.1:9100"]}]
  - job_name: dup-job
    static_configs: [{targets: ["127.0.0.1:9101"]}]
  - job_name: slow-job
    scrape_interval: 5s
    scrape_timeout: 10s
    static_configs: [{targets: ["127.0.0.1:9102"]}]
  - job_name: regex-job
    static_configs: [{targets: ["127.0.0.1:9103"]}]
    relabel_configs:
      - source_labels: [__address__]
        regex: "([unclosed"
        target_label: x
"""


def test_check_config_good(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(json.dumps(GOOD_CONFIG))
    p = run("check-config", str(path))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def test_check_config_reports_every_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG)
    p = run("check-config", str(path))
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    low = out.lower()
    assert "dup-job" in out and any(w in low for w in ("duplicate", "multiple", "more than once", "unique")), out
    assert "slow-job" in out and any(w in low for w in ("scrape_timeout", "scrape timeout")), out
    assert "regex" in low and "unclosed" in out, out
    assert str(path) in out or "bad.yaml" in out, f"errors should name the file\n{out}"


def test_check_config_unknown_key_and_missing_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("server:\n  htp_addr: 127.0.0.1:1\n")
    p = run("check-config", str(path))
    assert p.returncode != 0
    assert "htp_addr" in p.stdout + p.stderr, p
    p = run("check-config", str(tmp_path / "missing.yaml"))
    assert p.returncode != 0
    assert "missing.yaml" in p.stdout + p.stderr, p


def test_sigterm_exits_zero_and_keeps_data(lookout_factory):
    lookout = lookout_factory()
    t = now_ms()
    samples = [(t - 1000 * i, float(i)) for i in range(5, 0, -1)]
    r = remote_write(lookout.remote_write_url, [({"__name__": "cli_flush", "job": "cli"}, samples)])
    assert 200 <= r.status_code < 300, (r.status_code, r.text)

    code = lookout.stop()
    assert code == 0, f"exit code {code} on SIGTERM\n{lookout.log_tail()}"
    lookout.start()
    raw = lookout.query_raw("cli_flush[1m]", t / 1000)
    assert raw == {
        frozenset({"__name__": "cli_flush", "job": "cli"}.items()): [(ts / 1000, v) for ts, v in samples]
    }


def answers(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/-/healthy", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_env_overrides_file_and_flags_override_env(lookout_factory):
    from helpers import free_port

    lookout = lookout_factory(start=False)
    file_port, env_port, flag_port = lookout.http_port, free_port(), free_port()
    env = {"LOOKOUT_HTTP_ADDR": f"127.0.0.1:{env_port}"}

    lookout.http_port = env_port  # where readiness is polled
    lookout.start(env=env)
    assert answers(env_port) and not answers(file_port)
    assert lookout.stop() == 0

    lookout.http_port = flag_port
    lookout.start(extra_args=["--http-addr", f"127.0.0.1:{flag_port}"], env=env)
    assert answers(flag_port) and not answers(env_port) and not answers(file_port)
