"""The sample events in events/ go through their handlers as AWS would deliver them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.aws import LocalAws
from local.event_sources import sqs_event
from local.lambda_runtime import invoke
from local.stack import _reset_cached_wiring

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@pytest.fixture
def handlers(local_aws: LocalAws, table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold start against this test's table (whatever stack ran before in this process)."""
    for name, value in {**local_aws.env(), "TABLE_NAME": table}.items():
        monkeypatch.setenv(name, value)
    for name in ("SECRETS_PATH", "PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    _reset_cached_wiring()


def queued(local_aws: LocalAws) -> int:
    attrs = local_aws.client("sqs").get_queue_attributes(
        QueueUrl=local_aws.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_every_sample_event_is_valid_json_and_documented() -> None:
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    readme = (EVENTS / "README.md").read_text()
    assert names, "no sample events"
    for name in names:
        assert name in readme, f"{name} is not described in events/README.md"


def test_the_admin_api_lists_the_callers_connections(handlers: None) -> None:
    response = invoke("AdminApiFunction", sample("admin_list_connections.json"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"connections": []}


def test_the_graph_validation_handshake_is_echoed(handlers: None) -> None:
    response = invoke("WebhooksFunction", sample("webhooks_graph_validation.json"))
    assert response["statusCode"] == 200
    assert response["body"] == "Validation: Testing"


def test_webhooks_from_strangers_are_refused_and_queue_nothing(
    handlers: None, local_aws: LocalAws
) -> None:
    before = queued(local_aws)
    graph = invoke("WebhooksFunction", sample("webhooks_graph_notification.json"))
    crm = invoke("WebhooksFunction", sample("webhooks_pipedrive.json"))
    assert 400 <= graph["statusCode"] < 500
    assert crm["statusCode"] == 401
    assert queued(local_aws) == before


def emitted_metrics(out: str) -> dict[str, Any]:
    """The CloudWatch EMF documents a handler printed: metric name -> value."""
    found: dict[str, Any] = {}
    for line in out.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "contactsync"
            for metric in directive["Metrics"]:
                found[metric["Name"]] = document[metric["Name"]]
    return found


def test_webhook_refusals_and_pass_delays_are_metrics(
    handlers: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as in Lambda (the stack: true)
    capsys.readouterr()
    # When a stranger's webhook is refused, and the reconciler takes a message
    invoke("WebhooksFunction", sample("webhooks_pipedrive.json"))
    refused = emitted_metrics(capsys.readouterr().out)
    invoke("ReconcilerFunction", sample("reconciler_sqs.json"))
    reconciled = emitted_metrics(capsys.readouterr().out)
    # Then each printed its metric as CloudWatch EMF
    assert refused == {"WebhookRejections": [1.0]}
    assert reconciled["PropagationDelay"][0] > 0


def test_the_reconciler_reports_no_failure_for_a_gone_connection(handlers: None) -> None:
    assert invoke("ReconcilerFunction", sample("reconciler_sqs.json")) == {"batchItemFailures": []}


def test_a_record_that_is_no_pass_request_fails_with_what_waits_behind_it_in_its_group(
    handlers: None, local_aws: LocalAws
) -> None:
    # Given a batch as the queue hands it over: in group "a" a body that is no pass request and
    # a pass request behind it, in group "b" a pass request (for connections long gone)
    sqs = local_aws.client("sqs")
    sent = [
        ("a", '{"connection_id": "a"}'),  # no reason: not a pass request
        ("a", '{"connection_id": "a", "reason": "schedule"}'),
        ("b", '{"connection_id": "b", "reason": "schedule"}'),
    ]
    for n, (group, body) in enumerate(sent):
        sqs.send_message(
            QueueUrl=local_aws.queue_url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=f"bad-record-{n}",
        )
    messages: list[dict[str, Any]] = []
    while len(messages) < len(sent):
        messages += sqs.receive_message(
            QueueUrl=local_aws.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
    ids = {m["Body"]: m["MessageId"] for m in messages}
    # When the reconciler takes it
    response = invoke("ReconcilerFunction", sqs_event(messages, "arn:aws:sqs:::sync.fifo"))
    # Then the bad record and the one behind it come back, group "b"'s pass ran
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed == {ids[sent[0][1]], ids[sent[1][1]]}


def test_the_scheduler_tick_finds_nothing_due_in_an_empty_table(handlers: None) -> None:
    assert invoke("SchedulerFunction", sample("scheduler_tick.json")) == {"enqueued": 0}


def test_a_body_that_is_not_utf8_is_a_400_not_a_500(handlers: None) -> None:
    # Given a settings change whose body is not UTF-8 (API Gateway passes it base64-encoded)
    event = sample("admin_list_connections.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/connections/abc"
    event["requestContext"]["http"]["method"] = "PATCH"
    event["pathParameters"] = {"proxy": "connections/abc"}
    event["body"], event["isBase64Encoded"] = "6T7pIX9icDM=", True  # b"\xe9>\xe9!\x7fbp3"
    # Then the answer says what to fix, in the error shape
    response = invoke("AdminApiFunction", event)
    assert response["statusCode"] == 400
    assert "UTF-8" in json.loads(response["body"])["error"]["message"]
