"""The original blueprint's worker, as the baseline for bench/work.sh: serial, boto3.

receive 10 -> for each message: download, Pillow thumbnail((224, 224)), save JPEG, upload ->
delete the batch. Quits on the first empty poll, like the blueprint. (It already handles every
record and decodes keys, which the blueprint did not: same work as qp, fair comparison.)

Usage: python work_python.py QUEUE_URL DEST_BUCKET PREFIX   (endpoint from AWS_ENDPOINT_URL)
"""

import io
import json
import os
import sys
from urllib.parse import unquote_plus

import boto3
from PIL import Image

queue_url, dest_bucket, prefix = sys.argv[1:4]
endpoint = os.environ.get("AWS_ENDPOINT_URL")
s3 = boto3.client("s3", endpoint_url=endpoint, config=boto3.session.Config(s3={"addressing_style": "path"}))
sqs = boto3.client("sqs", endpoint_url=endpoint)

processed = 0
while True:
    resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    messages = resp.get("Messages", [])
    if not messages:
        break
    for m in messages:
        body = json.loads(m["Body"])
        for rec in body.get("Records", []):
            bucket = rec["s3"]["bucket"]["name"]
            key = unquote_plus(rec["s3"]["object"]["key"])
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            im = Image.open(io.BytesIO(data))
            im.thumbnail((224, 224))
            out = io.BytesIO()
            im.convert("RGB").save(out, "JPEG")
            s3.put_object(Bucket=dest_bucket, Key=f"{prefix}/{key}", Body=out.getvalue(),
                          ContentType="image/jpeg")
            processed += 1
    sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
    )
print(f"python worker: {processed} processed", file=sys.stderr)
