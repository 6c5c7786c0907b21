#!/usr/bin/env bash
# Benchmark of `qp work` against the blueprint's serial Python worker (bench/work_python.py),
# both draining S3 notifications of the same images through one private moto server.
#
# Reports per worker: images/s (wall clock from start to the last image, the final empty poll
# excluded), CPU seconds of the worker process itself per 1000 images (user+sys from wait4, so
# moto's own CPU is not counted) and its peak RSS.
#
# Usage: bench/work.sh            (needs a release build: cargo build --release)
# Env:   QP_BENCH_IMAGES (default 600, from bench/corpus/small), QP_BIN, QP_MOTO_SERVER, QP_PYTHON
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="${QP_VENV:-$HOME/.cache/qp-venv}"
[ -x "$venv/bin/python" ] || venv=/opt/qp-venv
# shellcheck source=bench/moto.sh
. "$here/moto.sh"
qp="${QP_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/qp}"
n="${QP_BENCH_IMAGES:-600}"
[ -x "$qp" ] || { echo "bench: no release binary at $qp (cargo build --release)" >&2; exit 1; }
"$here/corpus.sh"

trap stop_moto EXIT
start_moto
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

# Three source buckets, each notifying its own queue; the same n images uploaded to each: qp with
# its defaults, qp with the Python worker's output settings (quality 75, hence 4:2:0), Python.
# The same files are also copied to $log_dir/in, for the image-only run at the end.
log_dir="$(mktemp -d)"
"$python" - "$here/corpus/small" "$n" "$log_dir/in" <<'PY'
import os, shutil, sys, boto3
corpus, n, local = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s3, sqs = boto3.client("s3"), boto3.client("sqs")
files = sorted(os.listdir(corpus))
files = (files * (n // len(files) + 1))[:n]
for who in ("qp", "q75", "py"):
    s3.create_bucket(Bucket=f"src-{who}")
    s3.create_bucket(Bucket=f"dst-{who}")
    q = sqs.create_queue(QueueName=f"q-{who}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=f"src-{who}", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    for i, f in enumerate(files):
        with open(os.path.join(corpus, f), "rb") as fh:
            s3.put_object(Bucket=f"src-{who}", Key=f"bench/{i:05d}/{f}", Body=fh.read())
os.makedirs(local)
for i, f in enumerate(files):
    shutil.copyfile(os.path.join(corpus, f), os.path.join(local, f"{i:05d}-{f}"))
print(f"bench: {n} images uploaded three times", file=sys.stderr)
PY
queue_url() { "$python" -c "import boto3; print(boto3.client('sqs').get_queue_url(QueueName='$1')['QueueUrl'])"; }

# Runs a command, prints "wall_s cpu_s maxrss_kb sys_s" of that process (wait4 rusage).
measure() {
  "$python" - "$@" <<'PY'
import os, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open(os.environ["BENCH_LOG"], "w"))
_, status, ru = os.wait4(p.pid, 0)
wall = time.monotonic() - t0
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"bench: {sys.argv[1]} failed; see {os.environ['BENCH_LOG']}")
print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f} {ru.ru_maxrss} {ru.ru_stime:.3f}")
PY
}

# qp work on the queue q-WHO into bucket dst-WHO, with extra settings as VAR=value arguments;
# prints measure's line.
qp_work() {
  local who=$1; shift
  (
    export BENCH_LOG="$log_dir/$who.log" QP_QUEUE_URL="$(queue_url "q-$who")" QP_DEST_BUCKET="dst-$who" \
      QP_S3_FORCE_PATH_STYLE=true QP_IDLE_TIMEOUT_SECS=1 QP_MODE=fit QP_LOG_FORMAT=json "$@"
    measure "$qp" work
  )
}

count() { "$python" -c "
import boto3
p = boto3.client('s3').get_paginator('list_objects_v2')
print(sum(len(page.get('Contents', [])) for page in p.paginate(Bucket='$1')))"; }

echo "bench: qp work ($("$qp" --version), mode fit 224x224 like Pillow's thumbnail)" >&2
read -r qp_wall qp_cpu qp_rss qp_sys < <(qp_work qp)
echo "bench: qp work at quality 75 (4:2:0), the Python worker's output settings" >&2
read -r q75_wall q75_cpu q75_rss _ < <(qp_work q75 QP_QUALITY=75)
echo "bench: serial Python worker (boto3 + Pillow)" >&2
read -r py_wall py_cpu py_rss _ < <(BENCH_LOG="$log_dir/py.log" \
  measure "$python" "$here/work_python.py" "$(queue_url q-py)" dst-py processed)
# The floor under qp work's CPU: the same image work alone, on the same files, no network.
echo "bench: qp resize --jobs 1 on the same files (image work alone)" >&2
read -r _ img_cpu _ _ < <(BENCH_LOG="$log_dir/resize.log" \
  measure "$qp" resize --mode fit --jobs 1 --out "$log_dir/out" "$log_dir/in")
grep -q "^qp: $n ok, 0 failed" "$log_dir/resize.log" || {
  echo "bench: qp resize did not convert the $n files (log in $log_dir)" >&2; exit 1; }
qp_out="$(count dst-qp)"; q75_out="$(count dst-q75)"; py_out="$(count dst-py)"
[ "$qp_out" = "$n" ] && [ "$q75_out" = "$n" ] && [ "$py_out" = "$n" ] || {
  echo "bench: expected $n outputs each, got qp=$qp_out qp-q75=$q75_out python=$py_out (logs in $log_dir)" >&2; exit 1; }

# Each worker ends with one empty poll of 1 s: not part of the throughput.
"$python" - "$n" "$qp_wall" "$qp_cpu" "$qp_rss" "$q75_wall" "$q75_cpu" "$q75_rss" "$py_wall" "$py_cpu" "$py_rss" "$qp_sys" "$img_cpu" "$(nproc)" <<'PY'
import sys
n = int(sys.argv[1]); qw, qc, qr, sw, sc, sr, pw, pc, pr, qs, ic = map(float, sys.argv[2:13]); cpus = sys.argv[13]
rate = lambda wall: n / max(wall - 1.0, 1e-9)
rows = [("qp work", rate(qw), qc / n * 1000, qr / 1024), ("python (serial)", rate(pw), pc / n * 1000, pr / 1024),
        ("qp work, quality 75", rate(sw), sc / n * 1000, sr / 1024)]
print(f"{n} images from bench/corpus/small through moto, {cpus} CPUs\n")
print("| worker | images/s | CPU s / 1000 images | peak RSS MB |")
print("|---|---:|---:|---:|")
for name, r, c, m in rows[:2]:
    print(f"| {name} | {r:.1f} | {c:.2f} | {m:.1f} |")
print(f"| qp advantage | {rows[0][1]/rows[1][1]:.1f}x faster | {rows[1][2]/rows[0][2]:.1f}x less CPU | {rows[1][3]/rows[0][3]:.1f}x less memory |")
print(f"| qp at quality 75 | {rows[2][1]:.1f} | {rows[2][2]:.2f} ({rows[1][2]/rows[2][2]:.1f}x less) | {rows[2][3]:.1f} |")
# The kernel's part: with moto, every request is a new loopback TCP connection, and the kernel
# bills the emulator's side of each packet to the sender too.
print(f"\nqp work (defaults): {(qc - qs) / n * 1000:.2f} ms user + {qs / n * 1000:.2f} ms system CPU per image; "
      f"the image work alone (qp resize, 1 thread, same files): {ic / n * 1000:.2f} ms; "
      f"10x less than Python would be {pc / n * 100:.2f} ms in all")
PY
rm -rf "$log_dir"
