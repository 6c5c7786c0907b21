#!/usr/bin/env bash
# `qp scale --dry-run` wall time against a private moto server, next to the same decision made by
# a Python boto3 script (bench/scale_peer.py: GetQueueAttributes, ListTasks over every page, the
# formula). Both are whole processes, measured by hyperfine in the same run.
#
#   bench/scale.sh [MESSAGES] [TASKS]     default: 350 messages, 40 running worker tasks
#
# Needs a release build (cargo build --release; QP_BIN to use another binary), hyperfine, and the
# venv of scripts/setup (moto server, boto3). Goal: qp under 50 ms.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
messages="${1:-350}"
tasks="${2:-40}"
venv="${QP_VENV:-$HOME/.cache/qp-venv}"
python="${QP_PYTHON:-$venv/bin/python}"
moto="${QP_MOTO_SERVER:-$venv/bin/moto_server}"
qp="${QP_BIN:-${CARGO_TARGET_DIR:-$here/../target}/release/qp}"
runs="${QP_BENCH_RUNS:-100}"
for tool in "$qp" "$python" "$moto"; do
  [ -x "$tool" ] || { echo "scale.sh: $tool is missing (cargo build --release; scripts/setup)" >&2; exit 1; }
done
command -v hyperfine >/dev/null || { echo "scale.sh: hyperfine is missing (apt-get install -y hyperfine)" >&2; exit 1; }

port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$moto" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null QP_LOG_FORMAT=text
for _ in $(seq 100); do
  "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
  sleep 0.1
done

eval "$("$python" "$here/scale_peer.py" setup "$messages" "$tasks")"
echo "qp:     $("$qp" scale --dry-run)" >&2
echo "python: $("$python" "$here/scale_peer.py" decide)" >&2
"$qp" --version >&2

hyperfine --warmup 5 --runs "$runs" -N --export-markdown "${QP_BENCH_OUT:-/dev/stdout}" \
  -n "qp scale --dry-run" "$qp scale --dry-run" \
  -n "python boto3 peer" "$python $here/scale_peer.py decide"
echo "python boto3, in one warm process (a warm Python Lambda): $("$python" "$here/scale_peer.py" loop 50) ms per decision" >&2
