"""What runs locally is what template.yaml declares, and the template keeps its guardrails."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
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
    assert set(local_indexes) == set(declared_indexes) == {"GSI1", "GSI2", "DueIndex", "AuditIndex"}
    for name, index in declared_indexes.items():
        assert local_indexes[name]["KeySchema"] == index["KeySchema"]
        assert local_indexes[name]["Projection"] == index["Projection"]
    # And the audit index carries only what the support questions pick entries by
    assert declared_indexes["AuditIndex"]["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["kind", "at", "side", "message", "details"],
    }
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
    assert int(redrive["maxReceiveCount"]) == declared["RedrivePolicy"]["maxReceiveCount"] == 20


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
    # When it is received and never deleted, as many times as the template allows
    for _ in range(int(props(load_template(), "SyncQueue")["RedrivePolicy"]["maxReceiveCount"])):
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


# --- the guardrail checker ---------------------------------------------------------------------
#
# ``guardrail_violations`` reads the parsed template and says, in words, every guardrail it breaks.
# The tests below run it on template.yaml (no violation) and on copies with a planted violation
# (each one reported), so the checker itself is shown to work.

SCOPED_POLICY_TEMPLATES: dict[str, tuple[str, Any]] = {
    # SAM policy template -> (its scoping parameter, the one resource of ours it must name)
    "DynamoDBCrudPolicy": ("TableName", {"Ref": "Table"}),
    "DynamoDBReadPolicy": ("TableName", {"Ref": "Table"}),
    "SQSSendMessagePolicy": ("QueueName", {"Fn::GetAtt": ["SyncQueue", "QueueName"]}),
    "KMSDecryptPolicy": ("KeyId", {"Ref": "TokenKey"}),
    "SSMParameterReadPolicy": ("ParameterName", {"Fn::Sub": "${SecretsPath}/${Stage}/*"}),
}
POLICY_RESOURCE_TYPES = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
STATEMENT_POLICY_TYPES = {
    "AWS::KMS::Key": "KeyPolicy",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
}


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _has_wildcard(value: Any) -> bool:
    """A ``*`` anywhere in an action, resource or principal (inside intrinsics too)."""
    return "*" in json.dumps(value)


def _names_our_resource(value: Any, resources: dict[str, Any]) -> bool:
    """True when every entry of a Resource is built from one of the template's own resources."""
    for item in _listed(value):
        if not isinstance(item, dict):
            return False
        if item.get("Ref") in resources or _getatt_target(item) in resources:
            continue
        text = json.dumps(item.get("Fn::Sub", ""))
        if not any(f"${{{name}" in text for name in resources):
            return False
    return True


def _within(value: Any, expected: Any) -> bool:
    """``value`` is the expected scope, or one name under a scope that ends in ``/*``."""
    if value == expected:
        return True
    wanted, given = (expected or {}).get("Fn::Sub"), (value or {}).get("Fn::Sub")
    if not isinstance(wanted, str) or not isinstance(given, str) or not wanted.endswith("/*"):
        return False
    name = given.removeprefix(wanted[:-1])
    return given.startswith(wanted[:-1]) and bool(name) and not set("*/$") & set(name)


def _getatt_target(value: Any) -> str | None:
    target = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    return str(target[0]) if isinstance(target, list) and target else None


class _Findings:
    """Violations, plus the wildcard reasons the template owes and the ones it gives."""

    def __init__(self, reasons: dict[str, Any]) -> None:
        self.violations: list[str] = []
        self.reasons = reasons
        self.owed: set[str] = set()

    def wildcard(self, key: str, what: str) -> None:
        self.owed.add(key)
        reason = self.reasons.get(key)
        if not isinstance(reason, str) or len(reason.split()) < 5:
            self.violations.append(f"{key}: {what} uses a wildcard with no written reason")


def _check_statements(
    findings: _Findings, key: str, statements: Any, resources: dict[str, Any]
) -> None:
    for statement in _listed(statements or []):
        if statement.get("Effect") != "Allow":
            continue
        for field in ("Action", "NotAction", "Principal", "NotResource"):
            if field in statement and _has_wildcard(statement[field]):
                findings.wildcard(key, field)
        if "Resource" not in statement:
            continue
        if _has_wildcard(statement["Resource"]):
            findings.wildcard(key, "Resource")
        elif not _names_our_resource(statement["Resource"], resources):
            findings.violations.append(f"{key}: a statement is not scoped to a resource of ours")


def _check_function_policies(findings: _Findings, template: dict[str, Any]) -> None:
    resources = template["Resources"]
    roles: dict[str, str] = {}
    traced_globally = (template.get("Globals", {}).get("Function", {}).get("Tracing")) == "Active"
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        if "Role" in props:
            role = json.dumps(props["Role"], sort_keys=True)
            if role in roles:
                findings.violations.append(f"{name}: shares its role with {roles[role]}")
            roles[role] = name
        if props.get("Tracing") == "Active":
            findings.wildcard(f"{name}.Tracing", "Tracing (AWSXrayWriteOnlyAccess)")
        for policy in _listed(props.get("Policies") or []):
            if isinstance(policy, str):
                findings.wildcard(f"{name}.{policy}", f"the managed policy {policy}")
                continue
            for kind, params in policy.items():
                if kind == "Statement":
                    _check_statements(findings, f"{name}.Statement", params, resources)
                    continue
                if kind not in SCOPED_POLICY_TEMPLATES:
                    findings.violations.append(f"{name}: {kind} is not a policy we scope")
                    continue
                param, expected = SCOPED_POLICY_TEMPLATES[kind]
                if not _within((params or {}).get(param), expected):
                    findings.violations.append(
                        f"{name}: {kind} is not scoped to {json.dumps(expected)}"
                    )
                if _has_wildcard(expected):
                    findings.wildcard(f"{name}.{kind}", kind)
    if traced_globally:
        findings.wildcard("Globals.Tracing", "Tracing (AWSXrayWriteOnlyAccess)")


def _check_other_policies(findings: _Findings, template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for name, resource in resources.items():
        kind, props = resource.get("Type"), resource.get("Properties", {})
        if kind in STATEMENT_POLICY_TYPES:
            document = props.get(STATEMENT_POLICY_TYPES[kind]) or {}
            _check_statements(findings, name, document.get("Statement"), resources)
        elif kind in POLICY_RESOURCE_TYPES:
            documents = [p.get("PolicyDocument", {}) for p in props.get("Policies", [])]
            documents.append(props.get("PolicyDocument") or {})
            for document in documents:
                _check_statements(findings, name, document.get("Statement"), resources)
            if kind == "AWS::IAM::Role" and props.get("ManagedPolicyArns"):
                findings.wildcard(f"{name}.ManagedPolicyArns", "managed policies")


def _check_queues(findings: _Findings, template: dict[str, Any]) -> None:
    resources = template["Resources"]
    queues = {n for n, r in resources.items() if r.get("Type") == "AWS::SQS::Queue"}
    dead_letter = {
        _getatt_target(
            (resources[q]["Properties"].get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        )
        for q in queues
    } - {None}
    # Queues that are an event source's dead-letter queue (the schedule's) are DLQs too.
    for function in resources.values():
        for event in (function.get("Properties", {}).get("Events") or {}).values():
            config = (event.get("Properties") or {}).get("DeadLetterConfig") or {}
            dead_letter.add(_getatt_target(config.get("Arn")))
    dead_letter -= {None}
    alarmed = set()
    for alarm in (r for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"):
        props = alarm.get("Properties", {})
        fires_on_first = (props.get("ComparisonOperator"), props.get("Threshold")) in (
            ("GreaterThanThreshold", 0),
            ("GreaterThanOrEqualToThreshold", 1),
        )
        if (
            props.get("Namespace") == "AWS/SQS"
            and props.get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and props.get("AlarmActions")
            and fires_on_first
        ):
            alarmed.update(_getatt_target(d.get("Value")) for d in props.get("Dimensions", []))
    for name in sorted(queues):
        props = resources[name].get("Properties", {})
        if props.get("SqsManagedSseEnabled") is not True and not props.get("KmsMasterKeyId"):
            findings.violations.append(f"{name}: the queue is not encrypted")
        if name in dead_letter:
            if name not in alarmed:
                findings.violations.append(f"{name}: the dead-letter queue has no depth alarm")
            continue
        redrive = props.get("RedrivePolicy") or {}
        target = _getatt_target(redrive.get("deadLetterTargetArn"))
        if target not in queues or not redrive.get("maxReceiveCount"):
            findings.violations.append(f"{name}: the queue has no redrive policy to a DLQ")


def _is_prod_only(value: Any, conditions: dict[str, Any]) -> bool:
    if value is True:
        return True  # protected in every stage is fine too
    branches = value.get("Fn::If") if isinstance(value, dict) else None
    if not (isinstance(branches, list) and branches[1:] == [True, False]):
        return False
    equals = (conditions.get(branches[0]) or {}).get("Fn::Equals") or []
    return sorted(json.dumps(v) for v in equals) == sorted(
        [json.dumps({"Ref": "Stage"}), json.dumps("prod")]
    )


def _check_tables(findings: _Findings, template: dict[str, Any]) -> None:
    conditions = template.get("Conditions", {})
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource.get("Properties", {})
        if (props.get("SSESpecification") or {}).get("SSEEnabled") is not True:
            findings.violations.append(f"{name}: the table is not encrypted (SSEEnabled)")
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            findings.violations.append(f"{name}: the table has no point-in-time recovery")
        if not _is_prod_only(props.get("DeletionProtectionEnabled"), conditions):
            findings.violations.append(f"{name}: no deletion protection in the prod stage")
        if resource.get("DeletionPolicy") != "Retain":
            findings.violations.append(f"{name}: the table is not retained when the stack goes")


def _check_apis(findings: _Findings, template: dict[str, Any]) -> None:
    defaults = template.get("Globals", {}).get("HttpApi", {}).get("DefaultRouteSettings") or {}
    for name, resource in template["Resources"].items():
        if resource.get("Type") not in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"):
            continue
        settings = {**defaults, **(resource["Properties"].get("DefaultRouteSettings") or {})}
        if not (settings.get("ThrottlingBurstLimit") and settings.get("ThrottlingRateLimit")):
            findings.violations.append(f"{name}: the API has no throttling (DefaultRouteSettings)")


def _check_log_retention(findings: _Findings, template: dict[str, Any]) -> None:
    resources = template["Resources"]
    groups = {
        json.dumps(r["Properties"].get("LogGroupName")): n
        for n, r in resources.items()
        if r.get("Type") == "AWS::Logs::LogGroup" and r["Properties"].get("RetentionInDays")
    }
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        logging_config = resource.get("Properties", {}).get("LoggingConfig") or {}
        own = (logging_config.get("LogGroup") or {}) if isinstance(logging_config, dict) else {}
        by_config = isinstance(own, dict) and own.get("Ref") in groups.values()
        by_name = json.dumps({"Fn::Sub": f"/aws/lambda/${{{name}}}"}) in groups
        if not (by_config or by_name):
            findings.violations.append(f"{name}: no log group with a retention period")


def guardrail_violations(template: dict[str, Any]) -> list[str]:
    """Every guardrail ``template`` breaks, in words (an empty list: all kept)."""
    guardrails = template.get("Metadata", {}).get("Guardrails", {})
    findings = _Findings(guardrails.get("WildcardReasons") or {})
    for check in (
        _check_function_policies,
        _check_other_policies,
        _check_queues,
        _check_tables,
        _check_apis,
        _check_log_retention,
    ):
        check(findings, template)
    for key in sorted(set(findings.reasons) - findings.owed):
        findings.violations.append(f"{key}: a wildcard reason for something that is not there")
    return findings.violations


def test_the_template_keeps_every_guardrail(template: dict[str, Any]) -> None:
    # Given template.yaml as deployed; When the checker reads it; Then nothing is reported
    assert guardrail_violations(template) == []


def _function_policies(t: dict[str, Any], function: str) -> list[Any]:
    policies: list[Any] = t["Resources"][function]["Properties"]["Policies"]
    return policies


def _plant_wildcard_action(t: dict[str, Any]) -> None:
    statement = {"Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Ref": "Table"}}
    _function_policies(t, "WebhooksFunction").append({"Statement": [statement]})


def _plant_wildcard_resource(t: dict[str, Any]) -> None:
    statement = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}
    _function_policies(t, "SchedulerFunction").append({"Statement": [statement]})


def _plant_unscoped_resource(t: dict[str, Any]) -> None:
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x/y"}
    _function_policies(t, "SchedulerFunction").append({"Statement": [statement]})


def _plant_managed_policy(t: dict[str, Any]) -> None:
    _function_policies(t, "SchedulerFunction").append("AmazonSQSFullAccess")


def _plant_other_table(t: dict[str, Any]) -> None:
    _function_policies(t, "WebhooksFunction")[0] = {
        "DynamoDBReadPolicy": {"TableName": {"Ref": "SomeoneElsesTable"}}
    }


def _plant_shared_role(t: dict[str, Any]) -> None:
    for function in ("WebhooksFunction", "SchedulerFunction"):
        t["Resources"][function]["Properties"]["Role"] = {"Fn::GetAtt": ["SharedRole", "Arn"]}


def _plant_missing_reason(t: dict[str, Any]) -> None:
    del t["Metadata"]["Guardrails"]["WildcardReasons"]["TokenKey"]


def _plant_stale_reason(t: dict[str, Any]) -> None:
    t["Metadata"]["Guardrails"]["WildcardReasons"]["Gone.Statement"] = "was needed once, not now"


def _plant_unencrypted_queue(t: dict[str, Any]) -> None:
    del t["Resources"]["SyncQueue"]["Properties"]["SqsManagedSseEnabled"]


def _plant_queue_without_redrive(t: dict[str, Any]) -> None:
    t["Resources"]["ExtraQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"SqsManagedSseEnabled": True},
    }


def _plant_dlq_without_alarm(t: dict[str, Any]) -> None:
    del t["Resources"]["SyncDeadLetterQueueAlarm"]


def _plant_table_without_pitr(t: dict[str, Any]) -> None:
    t["Resources"]["Table"]["Properties"]["PointInTimeRecoverySpecification"] = {
        "PointInTimeRecoveryEnabled": False
    }


def _plant_unencrypted_table(t: dict[str, Any]) -> None:
    del t["Resources"]["Table"]["Properties"]["SSESpecification"]


def _plant_unprotected_prod_table(t: dict[str, Any]) -> None:
    t["Resources"]["Table"]["Properties"]["DeletionProtectionEnabled"] = False


def _plant_unthrottled_api(t: dict[str, Any]) -> None:
    del t["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]


def _plant_log_group_without_retention(t: dict[str, Any]) -> None:
    del t["Resources"]["ReconcilerFunctionLogGroup"]["Properties"]["RetentionInDays"]


PLANTED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # name -> (how the copy is broken, what the report must say)
    "wildcard action": (_plant_wildcard_action, "WebhooksFunction.Statement: Action"),
    "wildcard resource": (_plant_wildcard_resource, "SchedulerFunction.Statement: Resource"),
    "unscoped resource": (_plant_unscoped_resource, "not scoped to a resource of ours"),
    "managed policy": (_plant_managed_policy, "managed policy AmazonSQSFullAccess"),
    "another table": (_plant_other_table, "DynamoDBReadPolicy is not scoped"),
    "shared role": (_plant_shared_role, "shares its role"),
    "missing reason": (_plant_missing_reason, "TokenKey: Action uses a wildcard"),
    "stale reason": (_plant_stale_reason, "Gone.Statement: a wildcard reason"),
    "unencrypted queue": (_plant_unencrypted_queue, "SyncQueue: the queue is not encrypted"),
    "queue without redrive": (_plant_queue_without_redrive, "ExtraQueue: the queue has no"),
    "dlq without alarm": (_plant_dlq_without_alarm, "SyncDeadLetterQueue: the dead-letter"),
    "table without pitr": (_plant_table_without_pitr, "no point-in-time recovery"),
    "unencrypted table": (_plant_unencrypted_table, "the table is not encrypted"),
    "unprotected prod table": (_plant_unprotected_prod_table, "no deletion protection"),
    "unthrottled api": (_plant_unthrottled_api, "HttpApi: the API has no throttling"),
    "no log retention": (_plant_log_group_without_retention, "ReconcilerFunction: no log group"),
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_the_checker_reports_a_planted_violation(template: dict[str, Any], planted: str) -> None:
    # Given a copy of the template with one guardrail broken
    plant, expected = PLANTED[planted]
    broken = copy.deepcopy(template)
    plant(broken)
    # When the checker reads it
    violations = guardrail_violations(broken)
    # Then the broken guardrail is reported
    assert any(expected in v for v in violations), violations


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
    assert all(next(iter(p.values())) == {"TableName": {"Ref": "Table"}} for p in table_policies)
    # (or statements of its own, naming the table: the scheduler's Query and UpdateItem)
    statements = [s for p in policies if "Statement" in p for s in p["Statement"]]
    table_statements = [s for s in statements if "dynamodb:" in json.dumps(s.get("Action"))]
    assert all("Table" in json.dumps(s["Resource"]) for s in table_statements)
    assert table_policies or table_statements


def test_the_scheduler_may_only_query_the_due_index_and_update_items(
    template: dict[str, Any],
) -> None:
    policies = props(template, "SchedulerFunction")["Policies"]
    assert not [p for p in policies if "DynamoDBCrudPolicy" in p or "DynamoDBReadPolicy" in p]
    actions = {
        s["Action"]: json.dumps(s["Resource"])
        for p in policies
        if "Statement" in p
        for s in p["Statement"]
    }
    assert actions == {
        "dynamodb:Query": json.dumps({"Fn::Sub": "${Table.Arn}/index/DueIndex"}),
        "dynamodb:UpdateItem": json.dumps({"Fn::GetAtt": ["Table", "Arn"]}),
    }


def test_the_schedule_retries_and_keeps_what_it_could_not_deliver(
    template: dict[str, Any],
) -> None:
    schedule = props(template, "SchedulerFunction")["Events"]["EveryMinute"]["Properties"]
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert schedule["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}
    policy = props(template, "ScheduleDeadLetterQueuePolicy")["PolicyDocument"]["Statement"][0]
    assert policy["Principal"] == {"Service": "events.amazonaws.com"}


def _alarms(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in template["Resources"].values()
        if r.get("Type") == "AWS::CloudWatch::Alarm"
    ]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_error_and_throttle_alarms(
    template: dict[str, Any], function: str, metric: str
) -> None:
    watching = [
        a
        for a in _alarms(template)
        if a["Namespace"] == "AWS/Lambda"
        and a["MetricName"] == metric
        and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
    ]
    assert len(watching) == 1 and watching[0]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


@pytest.mark.parametrize(
    ("namespace", "metric"),
    [
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("contactsync", "WebhookRejections"),
        ("contactsync", "GuardHolds"),
    ],
)
def test_the_queue_age_webhook_rejections_and_guard_holds_are_alarmed(
    template: dict[str, Any], namespace: str, metric: str
) -> None:
    watching = [
        a for a in _alarms(template) if (a["Namespace"], a["MetricName"]) == (namespace, metric)
    ]
    assert len(watching) == 1 and watching[0]["AlarmActions"]


def test_alarm_texts_say_the_configured_receive_count(template: dict[str, Any]) -> None:
    receives = props(template, "SyncQueue")["RedrivePolicy"]["maxReceiveCount"]
    text = json.dumps(template, default=str)
    assert f"{receives} receives" in text
    assert not re.search(rf"\b(?!{receives}\b)\d+ (failed )?receives", text)
    assert not re.search(r"failed \d+ times", text)


def test_webhook_routes_are_throttled_apart_and_functions_have_reserved_concurrency(
    template: dict[str, Any],
) -> None:
    routes = props(template, "HttpApi")["RouteSettings"]
    assert set(routes) == {
        "POST /webhooks/microsoft",
        "POST /webhooks/microsoft/lifecycle",
        "POST /webhooks/pipedrive",
    }
    assert all(
        r["ThrottlingRateLimit"] > 0 and r["ThrottlingBurstLimit"] > 0 for r in routes.values()
    )
    for function in ("WebhooksFunction", "AdminApiFunction"):
        assert props(template, function)["ReservedConcurrentExecutions"] > 0


def test_the_jwt_issuer_and_audience_have_no_default(template: dict[str, Any]) -> None:
    for name in ("JwtIssuer", "JwtAudience"):
        assert "Default" not in template["Parameters"][name]


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
        ("GET", "/settings"),
        ("GET", "/assets/{name}"),
        ("GET", "/status-page"),
        ("GET", "/public/status"),
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
