"""Alternating pairs for bench/enqueue.sh: qp enqueue, then the boto3 peer, then qp, ... each
sending every image of the bucket to the same queue on the same moto server.

Per run: wall time, the process's CPU (user + sys from wait4: the emulator's is not in it) and
moto's CPU over the same interval (from /proc: the emulator's share of the wall time).

Drainer threads receive (long polls) and delete from the queue all along, and each run waits for
the queue to be empty again; the messages they took are counted (by id), and each run must have
delivered exactly its images. The enqueuers reach moto through a gate, a proxy that holds a
SendMessageBatch while GATE messages or more are on their way (sent, not yet read back): moto
rebuilds the queue's attributes, a walk over every message not yet deleted with clock reads, for
each message sent and each message received, and serves one request at a time, so once sends
outrun the drainers (qp keeps 8 batches in flight; the listing's first pages keep moto busy for
seconds) its queue grows and never shrinks again (a paced run at 100 messages a second did so
after four runs, once the machine got busier). Held at the gate, an enqueuer sees a slow SQS;
its CPU is unchanged. The drainers' requests are in moto's CPU, for both contenders alike.

usage: enqueue_pairs.py PAIRS MOTO_PID MOTO_PORT BUCKET IMAGES QP_BIN PYTHON PEER_SCRIPT
"""
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import boto3

DRAINERS = 4
GATE = 60


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gate:
    """The proxy: one request per connection (moto answers each with Connection: close)."""

    def __init__(self, upstream_port, drained):
        self.upstream_port = upstream_port
        self.drained = drained
        self.forwarded = 0
        self.tasks = set()  # the connections being served (asyncio keeps only weak references)
        self.lock = None
        self.port = None
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready):
        async def main():
            self.lock = asyncio.Lock()
            server = await asyncio.start_server(self._pass, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()
        asyncio.run(main())

    async def _pass(self, reader, writer):
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            fields = dict(
                line.split(":", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ":" in line)
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            body = await reader.readexactly(int(fields.get("content-length", "0")))
            if fields.get("x-amz-target", "").endswith(".SendMessageBatch"):
                entries = len(json.loads(body)["Entries"])
                async with self.lock:
                    deadline = time.monotonic() + 2
                    while self.forwarded >= len(self.drained) + GATE and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                    self.forwarded += entries
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_w.write(head + body)
            await up_w.drain()
            while chunk := await up_r.read(65536):
                writer.write(chunk)
                await writer.drain()
            up_w.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # a client that went away: nothing to forward
        finally:
            writer.close()
            self.tasks.discard(task)


def main():
    pairs, moto_pid, moto_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    bucket, images = sys.argv[4], int(sys.argv[5])
    qp, python, peer = sys.argv[6], sys.argv[7], sys.argv[8]
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="bench-enqueue")["QueueUrl"]
    drained = set()  # message ids: moto may hand one message to two drainers
    lock = threading.Lock()

    def drain():
        c = boto3.client("sqs")
        while True:
            got = c.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            msgs = got.get("Messages", [])
            if msgs:
                c.delete_message_batch(QueueUrl=queue, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
                with lock:
                    drained.update(m["MessageId"] for m in msgs)

    for _ in range(DRAINERS):
        threading.Thread(target=drain, daemon=True).start()
    gate = Gate(moto_port, drained)
    commands = {
        "qp": [qp, "enqueue", f"s3://{bucket}"],
        "boto3": [python, peer, bucket, queue],
    }

    def run(name):
        with lock:
            drained.clear()
        gate.forwarded = 0
        env = dict(os.environ, QP_QUEUE_URL=queue, QP_S3_FORCE_PATH_STYLE="true", QP_LOG_FORMAT="json",
                   AWS_ENDPOINT_URL=f"http://127.0.0.1:{gate.port}")
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
        # The next run starts on an empty queue, and every message arrived once.
        deadline = time.monotonic() + 120
        while len(drained) < images and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        if len(drained) != images:
            sys.exit(f"bench: {name}: {len(drained)} messages read back, {images} sent")
        cpu = ru.ru_utime + ru.ru_stime
        print(f"bench: {name}: wall {wall:.2f} s, CPU {cpu:.3f} s (user {ru.ru_utime:.3f}), "
              f"moto {moto:.2f} s", file=sys.stderr)
        return wall, cpu, moto

    run("qp"), run("boto3")  # warm-up: page cache, Python's imports
    rows = {"qp": [], "boto3": []}
    ratios = []
    for _ in range(pairs):
        a, b = run("qp"), run("boto3")
        rows["qp"].append(a)
        rows["boto3"].append(b)
        ratios.append(a[1] / b[1])
    k = images / 1000
    print(f"{images} images listed and sent per run (plus {images // 10} other files listed), "
          f"{pairs} alternating pairs, medians, {time.strftime('%Y-%m-%d')}\n")
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
    print("pairs (qp / boto3 CPU): " + ", ".join(f"{r:.3f}" for r in ratios))


if __name__ == "__main__":
    main()
