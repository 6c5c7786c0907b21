#!/usr/bin/env bash
# `qp scale --dry-run` wall time against a private moto server, next to the same decision made by
# a Python boto3 script (bench/scale_peer.py: GetQueueAttributes, ListTasks over every page, the
# formula). Both are whole processes, measured by hyperfine in the same run, for each scenario:
#
#   bench/scale.sh                    idle (0 messages, 0 tasks), typical (35, 4), busy (350, 40)
#   bench/scale.sh MESSAGES TASKS     one scenario
#
# Also printed: the peer's time per decision inside one warm Python process (what a warm Python
# Lambda pays), which is about moto's own answer time. Needs a release build (cargo build
# --release; QP_BIN for another binary), hyperfine, and the venv of scripts/setup (moto, boto3).
# QP_BENCH_RUNS sets the repetitions (100). Goal: qp under 50 ms.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/moto.sh
. "$here/moto.sh"
qp="${QP_BIN:-${CARGO_TARGET_DIR:-$here/../target}/release/qp}"
runs="${QP_BENCH_RUNS:-100}"
need "$qp" "$python" "$moto"
command -v hyperfine >/dev/null || { echo "scale.sh: hyperfine is missing (apt-get install -y hyperfine)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'stop_moto; rm -rf "$work"' EXIT

export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null \
  AWS_SHARED_CREDENTIALS_FILE=/dev/null QP_LOG_FORMAT=text

# scenario NAME MESSAGES TASKS: a fresh moto set up with that queue and those running tasks.
scenario() {
  local name="$1" messages="$2" tasks="$3"
  start_moto
  eval "$("$python" "$here/scale_peer.py" setup "$messages" "$tasks")"
  echo "== $name: $messages messages, $tasks running tasks" >&2
  echo "qp:     $("$qp" scale --dry-run)" >&2
  echo "python: $("$python" "$here/scale_peer.py" decide)" >&2
  hyperfine --warmup 5 --runs "$runs" -N --export-json "$work/$name.json" \
    -n "qp scale --dry-run" "$qp scale --dry-run" \
    -n "python boto3 peer" "$python $here/scale_peer.py decide" >&2
  "$python" "$here/scale_peer.py" loop 50 >"$work/$name.warm"
  stop_moto
}

if [ $# -ge 2 ]; then
  scenarios=("custom $1 $2")
else
  scenarios=("idle 0 0" "typical 35 4" "busy 350 40")
fi
for s in "${scenarios[@]}"; do
  # shellcheck disable=SC2086
  scenario $s
done

echo "| scenario | qp scale --dry-run (ms) | qp CPU (ms) | python boto3 process (ms) | boto3 warm, per decision (ms) |"
echo "|---|---:|---:|---:|---:|"
for s in "${scenarios[@]}"; do
  read -r name messages tasks <<<"$s"
  "$python" - "$work/$name.json" "$(cat "$work/$name.warm")" "$name ($messages messages, $tasks tasks)" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
q, p = r["qp scale --dry-run"], r["python boto3 peer"]
ms = lambda v: f"{v * 1000:.1f}"
print(f"| {sys.argv[3]} | {ms(q['mean'])} ± {ms(q['stddev'])} (min {ms(q['min'])}) "
      f"| {ms(q['user'] + q['system'])} | {ms(p['mean'])} ± {ms(p['stddev'])} | {sys.argv[2]} |")
PY
done
