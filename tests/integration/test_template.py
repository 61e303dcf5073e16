"""What runs locally is what template.yaml declares, and the template keeps its guardrails."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from local.aws import LocalAws, create_queues, load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resource(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"][logical_id]
    return found


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = resource(template, logical_id)["Properties"]
    return found


def by_name(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {item[key]: item for item in items}


# --- the local resources match the template -----------------------------------------------------


def test_the_local_table_has_the_template_keys_indexes_and_ttl(
    local_aws: LocalAws, template: dict[str, Any]
) -> None:
    # Given the table the local stack created and the template's definition
    dynamodb = local_aws.client("dynamodb")
    table = dynamodb.describe_table(TableName=local_aws.table_name)["Table"]
    declared = props(template, "Table")
    # Then keys, attribute types, billing mode and every index match
    assert table["KeySchema"] == declared["KeySchema"]
    assert by_name(table["AttributeDefinitions"], "AttributeName") == by_name(
        declared["AttributeDefinitions"], "AttributeName"
    )
    assert (
        table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"] == ("PAY_PER_REQUEST")
    )
    local_indexes = by_name(table["GlobalSecondaryIndexes"], "IndexName")
    declared_indexes = by_name(declared["GlobalSecondaryIndexes"], "IndexName")
    assert set(local_indexes) == set(declared_indexes) == {"GSI1", "GSI2", "DueIndex"}
    for name, index in declared_indexes.items():
        assert local_indexes[name]["KeySchema"] == index["KeySchema"]
        assert local_indexes[name]["Projection"] == index["Projection"] == {"ProjectionType": "ALL"}
    # And TTL is on the declared attribute
    ttl = dynamodb.describe_time_to_live(TableName=local_aws.table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == declared["TimeToLiveSpecification"]["AttributeName"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"


def test_the_local_queues_are_fifo_with_the_template_redrive(
    local_aws: LocalAws, template: dict[str, Any]
) -> None:
    # Given the queues the local stack created
    sqs = local_aws.client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=local_aws.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    dlq = sqs.get_queue_attributes(QueueUrl=local_aws.dlq_url, AttributeNames=["All"])["Attributes"]
    declared = props(template, "SyncQueue")
    # Then both are FIFO, the sync queue sends to the DLQ after the declared receives
    assert queue["FifoQueue"] == dlq["FifoQueue"] == "true"
    assert local_aws.queue_url.endswith(".fifo") and local_aws.dlq_url.endswith(".fifo")
    assert queue["ContentBasedDeduplication"] == "false"
    assert int(queue["VisibilityTimeout"]) == declared["VisibilityTimeout"]
    assert int(queue["MessageRetentionPeriod"]) == declared["MessageRetentionPeriod"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == declared["RedrivePolicy"]["maxReceiveCount"] == 5


def test_a_message_that_keeps_failing_ends_in_the_dead_letter_queue(local_aws: LocalAws) -> None:
    # Given a message on a fresh pair of queues made from the template
    sqs = local_aws.client("sqs")
    queue_url, dlq_url = create_queues(sqs, f"redrive-{uuid.uuid4().hex[:8]}")
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody='{"connection_id": "poison"}',
        MessageGroupId="poison",
        MessageDeduplicationId="poison-1",
    )
    # When it is received and never deleted, five times
    for _ in range(5):
        received = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0)
        assert len(received.get("Messages", [])) == 1
    # Then the next receive finds nothing and the message sits in the DLQ
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)
    moved = sqs.receive_message(QueueUrl=dlq_url).get("Messages", [])
    assert [m["Body"] for m in moved] == ['{"connection_id": "poison"}']


def test_the_local_key_has_the_template_alias(local_aws: LocalAws) -> None:
    kms = local_aws.client("kms")
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    mine = [name for name, key in aliases.items() if key == local_aws.key_id]
    assert len(mine) == 1 and mine[0].startswith("alias/contactsync-tokens-local-")


def test_env_points_boto3_at_the_local_stack(local_aws: LocalAws) -> None:
    env = local_aws.env()
    assert env["TABLE_NAME"] == local_aws.table_name
    assert env["SYNC_QUEUE_URL"] == local_aws.queue_url
    assert env["AWS_ENDPOINT_URL_SQS"] == env["AWS_ENDPOINT_URL_KMS"] == local_aws.moto_url
    assert env["DYNAMODB_ENDPOINT_URL"] == local_aws.dynamodb_url
    assert all(url.startswith("http://127.0.0.1:") for k, url in env.items() if "URL" in k)


# --- the template keeps its guardrails ----------------------------------------------------------


FUNCTIONS = ("AdminApiFunction", "WebhooksFunction", "SchedulerFunction", "ReconcilerFunction")


def test_the_queue_outlives_six_reconciler_timeouts(template: dict[str, Any]) -> None:
    timeout = props(template, "ReconcilerFunction")["Timeout"]
    assert props(template, "SyncQueue")["VisibilityTimeout"] >= 6 * timeout


def test_the_dead_letter_queue_has_an_alarm(template: dict[str, Any]) -> None:
    alarm = props(template, "SyncDeadLetterQueueAlarm")
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["SyncDeadLetterQueue", "QueueName"]}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_the_reconciler_reports_partial_batch_failures(template: dict[str, Any]) -> None:
    event = props(template, "ReconcilerFunction")["Events"]["SyncQueue"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["BatchSize"] == 10
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_its_own_log_group_and_policies(
    template: dict[str, Any], function: str
) -> None:
    group = props(template, f"{function}LogGroup")
    assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
    assert "RetentionInDays" in group
    policies = props(template, function)["Policies"]
    table_policies = [p for p in policies if "DynamoDBCrudPolicy" in p or "DynamoDBReadPolicy" in p]
    assert table_policies and all(
        next(iter(p.values())) == {"TableName": {"Ref": "Table"}} for p in table_policies
    )


def test_only_admin_routes_sit_behind_the_jwt_authorizer(template: dict[str, Any]) -> None:
    api = props(template, "HttpApi")
    assert api["Auth"]["DefaultAuthorizer"] == "JwtAuthorizer"
    open_routes = set()
    for function in ("AdminApiFunction", "WebhooksFunction"):
        for event in props(template, function)["Events"].values():
            auth = event["Properties"].get("Auth", {})
            if auth.get("Authorizer") == "NONE":
                open_routes.add((event["Properties"]["Method"], event["Properties"]["Path"]))
    assert open_routes == {
        ("GET", "/oauth/{provider}/callback"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/webhooks/microsoft"),
        ("POST", "/webhooks/microsoft/lifecycle"),
        ("POST", "/webhooks/pipedrive"),
    }


def test_the_table_is_protected_and_encrypted(template: dict[str, Any]) -> None:
    table = props(template, "Table")
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}
    assert props(template, "TokenKey")["EnableKeyRotation"] is True
