#!/usr/bin/env bash
# prometheus.sh DIR PORT NAME=HOST:PORT... — run Prometheus in the foreground (exec: the PID is
# the server) on 127.0.0.1:PORT, scraping each clnode's /metrics at HOST:PORT (its health
# address) in the job "clnode" with the target labels instance=NAME and cluster=$PROM_CLUSTER
# [devnet], every 2 s, with the repository's alerts (deploy/prometheus/alerts.yml) loaded.
# Writes DIR/prometheus.yml at each start (checked with promtool first); data in DIR/data,
# kept at most 7 days and 256 MB. Query it at http://127.0.0.1:PORT (/targets, /alerts, /api/v1/...).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -ge 3 ]] || usage_error "DIR PORT NAME=HOST:PORT..."
dir=$(abspath "$1") port=$2
shift 2
require_port PORT "$port"
cluster=${PROM_CLUSTER:-devnet}
[[ $cluster =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "PROM_CLUSTER must be 1 to 64 letters, digits, '.', '_' or '-', got '$cluster'"
prometheus_bin=${PROMETHEUS_BIN:-$(command -v prometheus || true)}
[[ -n $prometheus_bin && -x $prometheus_bin ]] || die "prometheus not found (run scripts/deps.sh prometheus)"
promtool_bin=${PROMTOOL_BIN:-$(command -v promtool || true)}
[[ -n $promtool_bin && -x $promtool_bin ]] || die "promtool not found (run scripts/deps.sh prometheus)"
rules=$REPO_ROOT/deploy/prometheus/alerts.yml
[[ -f $rules ]] || die "missing $rules"

targets=()
for target in "$@"; do
  [[ $target =~ ^([A-Za-z0-9_.-]{1,64})=([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$ ]] ||
    die "target '$target' is not NAME=HOST:PORT"
  name=${BASH_REMATCH[1]} host=${BASH_REMATCH[2]} target_port=${BASH_REMATCH[3]}
  require_port "the port of $target" "$target_port"
  targets+=("      - targets: ['$host:$target_port']"
    "        labels: {instance: '$name', cluster: '$cluster'}")
done

mkdir -p "$dir/data"
config=$dir/prometheus.yml
{
  echo "# Written by scripts/prometheus.sh at each start; edits are lost."
  echo "global:"
  # 2 s: a lease TTL is 1 s, so a failover shows; the alerts wait 10 s and more.
  echo "  scrape_interval: 2s"
  echo "  scrape_timeout: 1s"
  echo "  evaluation_interval: 5s"
  echo "rule_files:"
  echo "  - '$rules'"
  echo "scrape_configs:"
  echo "  - job_name: clnode"
  echo "    metrics_path: /metrics"
  echo "    static_configs:"
  printf '%s\n' "${targets[@]}"
} >"$config"
"$promtool_bin" check config "$config" >/dev/null || die "promtool check config $config failed (see above)"

exec "$prometheus_bin" \
  --config.file="$config" \
  --storage.tsdb.path="$dir/data" \
  --storage.tsdb.retention.time=7d \
  --storage.tsdb.retention.size=256MB \
  --web.listen-address="127.0.0.1:$port"
