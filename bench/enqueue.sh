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
# shellcheck source=bench/moto.sh
. "$here/moto.sh"
qp="${QP_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/qp}"
pairs="${1:-7}"
n="${QP_BENCH_OBJECTS:-5000}"
need "$qp" "$python" "$moto"

trap stop_moto EXIT
start_moto
port="$moto_port"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

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
