#!/usr/bin/env bash
# CPU of `qp enqueue` per 1000 objects against a boto3 script doing the same list +
# send_message_batch (bench/enqueue_peer.py), both against one private moto server in the same
# run, in alternating pairs (bench/enqueue_pairs.py prints the medians and the ratio). CPU is
# the enqueuer process's own (wait4); moto's CPU over each run is shown next to it, as the part
# of the wall time that is the emulator's. Both reach moto through a gate (in enqueue_pairs.py)
# that keeps its queue short: its SQS model walks the whole queue on every message sent and
# received.
#
# Usage: bench/enqueue.sh [PAIRS]     (default 7; needs a release build: cargo build --release)
# Env:   QP_BENCH_OBJECTS (default 5000 images, plus 10% other files), QP_BIN, QP_MOTO_SERVER,
#        QP_PYTHON
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="${QP_VENV:-$HOME/.cache/qp-venv}"
python="${QP_PYTHON:-$venv/bin/python}"
moto="${QP_MOTO_SERVER:-$venv/bin/moto_server}"
qp="${QP_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/qp}"
pairs="${1:-7}"
n="${QP_BENCH_OBJECTS:-5000}"
for tool in "$qp" "$python" "$moto"; do
  [ -x "$tool" ] || { echo "enqueue.sh: $tool is missing (cargo build --release; scripts/setup)" >&2; exit 1; }
done

port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$moto" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
for _ in $(seq 100); do
  "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
  sleep 0.1
done

# n images (and n/10 other files) under 20 folders, tiny bodies: enqueue never reads them.
"$python" - "$n" <<'PY'
import sys
from concurrent.futures import ThreadPoolExecutor
import boto3
n = int(sys.argv[1])
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench-src")
keys = [f"folder {i % 20}/sub+{i % 7}/photo {i:06d}.jpg" for i in range(n)]
keys += [f"folder {i % 20}/notes {i:06d}.txt" for i in range(n // 10)]
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda k: s3.put_object(Bucket="bench-src", Key=k, Body=b"x" * 100), keys))
print(f"bench: {len(keys)} objects in bench-src ({n} images)", file=sys.stderr)
PY
echo "bench: $("$qp" --version), $(nproc) CPUs" >&2
"$python" "$here/enqueue_pairs.py" "$pairs" "$moto_pid" "$port" bench-src "$n" "$qp" "$python" "$here/enqueue_peer.py"
