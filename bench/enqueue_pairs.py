"""Alternating pairs for bench/enqueue.sh: qp enqueue, then the boto3 peer, then qp, ... each
sending every image of the bucket to the same queue on the same moto server.

Per run: wall time, the process's CPU (user + sys from wait4: the emulator's is not in it) and
moto's CPU over the same interval (from /proc: the emulator's share of the wall time).

A drainer thread receives and deletes from the queue all along: moto walks every queued message
on each message sent (it rebuilds the queue's attributes), so a queue left to grow makes a large
enqueue quadratic in the emulator. Its requests are in moto's CPU, for both contenders alike.

usage: enqueue_pairs.py PAIRS MOTO_PID BUCKET IMAGES QP_BIN PYTHON PEER_SCRIPT
"""
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import boto3


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    pairs, moto_pid, bucket, images = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    qp, python, peer = sys.argv[5], sys.argv[6], sys.argv[7]
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="bench-enqueue")["QueueUrl"]
    def drain():
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            msgs = got.get("Messages", [])
            if msgs:
                sqs.delete_message_batch(QueueUrl=queue, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])

    threading.Thread(target=drain, daemon=True).start()
    commands = {
        "qp": [qp, "enqueue", f"s3://{bucket}"],
        "boto3": [python, peer, bucket, queue],
    }

    def run(name):
        env = dict(os.environ, QP_QUEUE_URL=queue, QP_S3_FORCE_PATH_STYLE="true", QP_LOG_FORMAT="json")
        moto0, t0 = proc_cpu(moto_pid), time.monotonic()
        p = subprocess.Popen(commands[name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall, moto = time.monotonic() - t0, proc_cpu(moto_pid) - moto0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench: {name} failed")
        sent = json.loads(out)["sent"]
        if sent != images:
            sys.exit(f"bench: {name} sent {sent} of {images}")
        return wall, ru.ru_utime + ru.ru_stime, moto

    run("qp"), run("boto3")  # warm-up: page cache, Python's imports
    rows = {"qp": [], "boto3": []}
    ratios = []
    for _ in range(pairs):
        a, b = run("qp"), run("boto3")
        rows["qp"].append(a)
        rows["boto3"].append(b)
        ratios.append(a[1] / b[1])
    k = images / 1000
    print(f"{images} images listed and sent per run, {pairs} alternating pairs, medians\n")
    print("| enqueuer | wall s | CPU s | CPU ms / 1000 objects | moto CPU s | moto busy / wall |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        wall = statistics.median(x[0] for x in r)
        cpu = statistics.median(x[1] for x in r)
        moto = statistics.median(x[2] for x in r)
        share = statistics.median(x[2] / x[0] for x in r)
        print(f"| {name} | {wall:.2f} | {cpu:.3f} | {cpu / k * 1000:.1f} | {moto:.2f} | {share:.0%} |")
    print(f"\nqp CPU / boto3 CPU: {statistics.median(ratios):.3f}x, median of {pairs} pairs "
          f"({min(ratios):.3f}x..{max(ratios):.3f}x); goal <= 0.2x")


if __name__ == "__main__":
    main()
