#!/usr/bin/env bash
# Benchmarks against Prometheus 2.42 (and VictoriaMetrics 1.79 for ingest). Installs the
# peers (Debian packages) if missing, builds in release mode, runs the harness.
#
# Ingest (Lookout vs Prometheus vs VictoriaMetrics, one seeded remote-write stream;
# writes bench/results/latest.json):
#   bench/run.sh                 # default size (see BENCHMARKS.md)
#   bench/run.sh --quick         # 2,000 series: a few minutes, for checking the harness
#   bench/run.sh --series 50000 --repeats 3 --servers prometheus,lookout   # any `run` flag
#
# Range-query latency (Lookout vs Prometheus on 24 h of 104,000 series; writes
# bench/results/query-latest.json, keeps the loaded data in target/bench-query/):
#   bench/run.sh query               # load (about 15-20 min) and query
#   bench/run.sh query --reuse-data  # query the data loaded before, with a fresh build
#   bench/run.sh query --quick       # 2,080 series x 2 h: checks the harness in about a minute
#   bench/run.sh query --help        # every flag
#
# Trace ingest and lookup (Lookout alone: 10M spans over OTLP/HTTP, spans per CPU-second
# against the decode-only ceiling, trace-by-id lookup latency; writes
# bench/results/traces-latest.json):
#   bench/run.sh traces              # about 7 minutes on 2 cores
#   bench/run.sh traces --quick      # 300,000 spans: checks the harness in about 20 seconds
#   bench/run.sh traces --help       # every flag
#
# Logs (Lookout vs zstd -3 and a plain tantivy indexer on one seeded 5.5 GB corpus: raw MB
# ingested and indexed per server CPU-second, stored size / raw, search latency; writes
# bench/results/logs-latest.json):
#   bench/run.sh logs                # about 16 minutes on 2 cores, up to 5 GB of disk
#   bench/run.sh logs --quick        # 200 MB raw: checks the harness in a minute or two
#   bench/run.sh logs --keep         # keep the data dir and the peer index (target/bench-logs)
#   bench/run.sh logs --help         # every flag
#
# Rules (Lookout vs Prometheus: 1,000 alerting/recording rules at 15 s over 104k series,
# each server's own last-evaluation durations; then Lookout's end-to-end latency from a
# remote-written sample to a fake DingTalk robot; writes bench/results/rules-latest.json):
#   bench/run.sh rules               # about 15 minutes
#   bench/run.sh rules --quick       # 2,080 series, 200 rules: checks the harness in about 3 minutes
#   bench/run.sh rules --help        # every flag
#
# Metrics archive tier (in process: the query benchmark's fleet into 2 h blocks, then every
# block moved to Parquet; warm and archive bytes per sample, move throughput, selections
# from each tier; writes bench/results/archive-latest.json):
#   bench/run.sh archive             # 104,000 series x 6 h: about 3 minutes
#   bench/run.sh archive --help      # every flag
set -euo pipefail
cd "$(dirname "$0")/.."

subcommand=run
if [[ "${1:-}" == "query" || "${1:-}" == "traces" || "${1:-}" == "logs" || "${1:-}" == "rules" || "${1:-}" == "archive" ]]; then
    subcommand=$1
    shift
fi

args=()
if [[ "$subcommand" != "run" ]]; then
    # these take --quick themselves
    args=("$@")
else
    for a in "$@"; do
        if [[ "$a" == "--quick" ]]; then
            args+=(--series 2000 --stream-dir target/bench-stream-quick)
        else
            args+=("$a")
        fi
    done
fi

packages=(prometheus victoria-metrics)
if [[ "$subcommand" == "query" || "$subcommand" == "rules" ]]; then packages=(prometheus); fi
if [[ "$subcommand" == "traces" || "$subcommand" == "logs" || "$subcommand" == "archive" ]]; then packages=(); fi
missing=()
for pkg in "${packages[@]+"${packages[@]}"}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    echo "installing ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
fi
if [[ "$subcommand" != "traces" && "$subcommand" != "logs" && "$subcommand" != "archive" ]]; then
    echo "prometheus: $(prometheus --version 2>&1 | head -n1)" >&2
fi
if [[ "$subcommand" == "run" ]]; then
    echo "victoria-metrics: $(victoria-metrics -version 2>&1 | head -n1)" >&2
fi

cargo build --release -p lookout -p lookout-bench
exec target/release/lookout-bench "$subcommand" "${args[@]}"
