#!/usr/bin/env bash
# Ingest benchmark: Lookout vs Prometheus 2.42 vs VictoriaMetrics 1.79 on one seeded
# remote-write stream. Installs the peers (Debian packages) if missing, builds in release
# mode, runs the harness, prints the table and writes bench/results/latest.json.
#
#   bench/run.sh                 # default size (see BENCHMARKS.md)
#   bench/run.sh --quick         # 2,000 series: a few minutes, for checking the harness
#   bench/run.sh --series 50000 --repeats 3 --servers prometheus,lookout   # any `run` flag
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for a in "$@"; do
    if [[ "$a" == "--quick" ]]; then
        args+=(--series 2000 --stream-dir target/bench-stream-quick)
    else
        args+=("$a")
    fi
done

missing=()
for pkg in prometheus victoria-metrics; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    echo "installing ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
fi
echo "prometheus: $(prometheus --version 2>&1 | head -n1)" >&2
echo "victoria-metrics: $(victoria-metrics -version 2>&1 | head -n1)" >&2

cargo build --release -p lookout -p lookout-bench
exec target/release/lookout-bench run "${args[@]}"
