"""The boto3 peer of `qp enqueue`: list a bucket (every page), keep the image suffixes, and send
each object as an S3 ObjectCreated notification in SendMessageBatch calls of 10, checking every
entry's result and sending refused entries once more. What a careful operator's script does.

usage: enqueue_peer.py BUCKET QUEUE_URL
"""
import json
import sys
import urllib.parse

import boto3

SUFFIXES = (".jpg", ".jpeg")


def body(bucket, region, obj):
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region,
        "eventTime": obj["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "peer"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "", "x-amz-id-2": ""},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "peer",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": ""},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": urllib.parse.quote_plus(obj["Key"], safe="/*"),
                          "size": obj["Size"], "eTag": obj["ETag"].strip('"')}}}]})


def main():
    bucket, queue = sys.argv[1], sys.argv[2]
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    region = sqs.meta.region_name
    sent = failed = 0
    batch = []

    def flush():
        nonlocal sent, failed, batch
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)]
        for attempt in range(2):
            out = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
            sent += len(out.get("Successful", []))
            refused = {f["Id"] for f in out.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in refused]
            if not entries:
                break
        failed += len(entries)
        batch = []

    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].lower().endswith(SUFFIXES):
                batch.append(body(bucket, region, obj))
                if len(batch) == 10:
                    flush()
    if batch:
        flush()
    print(json.dumps({"sent": sent, "failed": failed}))


if __name__ == "__main__":
    main()
