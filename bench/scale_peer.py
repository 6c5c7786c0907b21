"""The Python/boto3 peer of `qp scale --dry-run`, for bench/scale.sh.

    scale_peer.py setup N_MESSAGES N_TASKS   create the AWS side on the endpoint, print the QP_* env
    scale_peer.py decide                     one dry-run decision, printed as JSON (reads QP_*)
    scale_peer.py loop N                     N decisions in one process; prints the mean ms each

`decide` does what qp does for a dry run: GetQueueAttributes, ListTasks over every page, the
same formula. Endpoint, region and credentials come from the usual AWS_* variables.
"""
import json
import math
import os
import sys
import time

import boto3


def setup(n_messages, n_tasks):
    ec2, ecs, sqs = (boto3.client(s) for s in ("ec2", "ecs", "sqs"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
        for i, az in enumerate(["us-east-1a", "us-east-1b"], 1)
    ]
    sg = ec2.create_security_group(GroupName="qp-worker", Description="qp", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName="qp", capacityProviders=["FARGATE", "FARGATE_SPOT"])
    ecs.register_task_definition(
        family="qp-worker", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="1024",
        memory="2048", containerDefinitions=[{"name": "worker", "image": "qp", "memory": 2048}])
    url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    for start in range(0, n_messages, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"n": i})} for i in range(start, min(n_messages, start + 10))])
    net = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [sg]}}
    for start in range(0, n_tasks, 10):
        ecs.run_task(cluster="qp", taskDefinition="qp-worker", count=min(10, n_tasks - start),
                     capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
                     networkConfiguration=net, startedBy="qp-scale")
    env = {"QP_QUEUE_URL": url, "QP_CLUSTER": "qp", "QP_TASK_DEFINITION": "qp-worker",
           "QP_CONTAINER_NAME": "worker", "QP_SUBNETS": ",".join(subnets), "QP_SECURITY_GROUPS": sg}
    for k, v in env.items():
        print(f"export {k}={v}")


def decide(sqs, ecs):
    attrs = sqs.get_queue_attributes(
        QueueUrl=os.environ["QP_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    visible = int(attrs["ApproximateNumberOfMessages"])
    in_flight = int(attrs["ApproximateNumberOfMessagesNotVisible"])
    family = os.environ["QP_TASK_DEFINITION"].rsplit("/", 1)[-1].split(":")[0]
    running = 0
    for page in ecs.get_paginator("list_tasks").paginate(
            cluster=os.environ["QP_CLUSTER"], family=family, desiredStatus="RUNNING",
            PaginationConfig={"PageSize": 100}):
        running += len(page["taskArns"])
    per_task = int(os.environ.get("QP_MESSAGES_PER_TASK", "10"))
    max_tasks = int(os.environ.get("QP_MAX_TASKS", "10"))
    backlog = visible + in_flight
    desired = min(max_tasks, math.ceil(backlog / per_task))
    launch = max(0, desired - running)
    return {"visible": visible, "in_flight": in_flight, "running": running, "desired": desired,
            "launch": launch, "dry_run": True}


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "decide"
    if cmd == "setup":
        setup(int(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "decide":
        print(json.dumps(decide(boto3.client("sqs"), boto3.client("ecs"))))
    elif cmd == "loop":
        n = int(sys.argv[2])
        sqs, ecs = boto3.client("sqs"), boto3.client("ecs")
        decide(sqs, ecs)
        t = time.perf_counter()
        for _ in range(n):
            decide(sqs, ecs)
        print(f"{(time.perf_counter() - t) * 1000 / n:.1f}")
    else:
        sys.exit(__doc__)
