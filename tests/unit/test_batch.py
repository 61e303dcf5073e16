"""A reconciler batch runs its connections' passes at once, reports only a failed connection's
records, and never runs one connection's passes alongside each other.

The handler, the Powertools FIFO processor and ``PassBatch`` are the real ones; the pass runner
stands in for the providers and the store (what a pass does is tested elsewhere): its passes wait
for each other on a barrier, so they pass only if they run at the same time.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.settings import Settings
from contactsync.sync.reconcile import PassResult

from functions.reconciler import app
from local.lambda_runtime import LambdaContext


@dataclass
class Queue:
    back: dict[str, float] = field(default_factory=dict)  # receipt handle -> delay

    def retry_later(self, receipt_handle: str, delay: float) -> None:
        self.back[receipt_handle] = delay

    def send(self, messages: list[SyncMessage]) -> None:
        raise AssertionError("no continuations here")


@dataclass
class Passes:
    """Each pass waits at ``meet`` for the others, then ends as ``ends`` says (done by default;
    an exception is raised)."""

    meet: threading.Barrier
    ends: dict[str, PassResult | Exception] = field(default_factory=dict)
    at_once: int = 10
    budget_left: float = 60.0
    queue: Queue = field(default_factory=Queue)
    runs: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    overlapped: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def wiring(self) -> Any:
        return SimpleNamespace(settings=Settings(passes_at_once=self.at_once))

    def budget(self, remaining_seconds: float) -> float | None:
        return self.budget_left if self.budget_left >= 5 else None

    def run(self, message: SyncMessage, budget_seconds: float | None = None) -> PassResult:
        cid = message.connection_id
        with self.lock:
            self.runs[cid] += 1
            self.running[cid] += 1
            if self.running[cid] > 1:
                self.overlapped.add(cid)
        try:
            self.meet.wait(timeout=2)
            end = self.ends.get(cid, PassResult("done"))
            if isinstance(end, Exception):
                raise end
            return end
        finally:
            with self.lock:
                self.running[cid] -= 1


def record(n: int, cid: str, reason: str = "schedule", body: str | None = None) -> dict[str, Any]:
    return {
        "messageId": f"m{n}",
        "receiptHandle": f"r{n}",
        "body": body or json.dumps({"connection_id": cid, "reason": reason}),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795600800000",
            "SequenceNumber": str(n),
            "MessageGroupId": cid,
            "SenderId": "test",
            "MessageDeduplicationId": f"d{n}",
            "ApproximateFirstReceiveTimestamp": "1795600800000",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:contactsync-sync.fifo",
        "awsRegion": "us-east-1",
    }


def invoke(passes: Passes, records: list[dict[str, Any]], monkeypatch: Any) -> set[str]:
    monkeypatch.setattr(app, "build_passes", lambda: passes)
    response = app.lambda_handler(
        {"Records": records}, LambdaContext(function_name="ReconcilerFunction")
    )
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


def test_the_passes_of_a_batch_run_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch naming three connections whose passes only end once all three have begun
    passes = Passes(meet=threading.Barrier(3))
    records = [record(1, "a"), record(2, "b"), record(3, "c")]
    # When the reconciler takes it, Then no record fails: the three ran together
    assert invoke(passes, records, monkeypatch) == set()
    assert passes.runs == {"a": 1, "b": 1, "c": 1}


def test_one_at_a_time_the_same_passes_would_wait_for_each_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the same batch run one pass at a time (the test can fail for the right reason)
    passes = Passes(meet=threading.Barrier(3), at_once=1)
    records = [record(1, "a"), record(2, "b"), record(3, "c")]
    # Then every pass waits in vain for the others and its records come back
    assert invoke(passes, records, monkeypatch) == {"m1", "m2", "m3"}


def test_only_the_failed_connections_records_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch with two messages for "a" and two for "b", whose pass fails, one for "c",
    # whose pass is throttled, and one for "d"
    passes = Passes(
        meet=threading.Barrier(4),
        ends={"b": RuntimeError("a fault of ours"), "c": PassResult("throttled", retry_after=7)},
    )
    records = [
        record(1, "a"),
        record(2, "b"),
        record(3, "a", "crm_push"),
        record(4, "b", "crm_push"),
        record(5, "c"),
        record(6, "d"),
    ]
    # When the reconciler takes it
    failed = invoke(passes, records, monkeypatch)
    # Then "b"'s records come back (the one behind the failed one too), and "c"'s after its wait
    assert failed == {"m2", "m4", "m5"}
    assert passes.queue.back == {"r2": 10.0, "r4": 10.0, "r5": 7}
    # And each connection's messages made one pass, which read every request ("a": coalesced)
    assert passes.runs == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert not passes.overlapped


def test_a_bad_record_holds_back_its_group_and_its_pass_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given group "a" with a body that is no pass request before a pass request, and group "b"
    passes = Passes(meet=threading.Barrier(1))
    records = [record(1, "a", body='{"connection_id": "a"}'), record(2, "a"), record(3, "b")]
    # When the reconciler takes it, Then both of "a"'s records come back and only "b" ran
    assert invoke(passes, records, monkeypatch) == {"m1", "m2"}
    assert passes.runs == {"b": 1}


def test_passes_that_would_outlive_the_invocation_are_not_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given too little time left for any pass
    passes = Passes(meet=threading.Barrier(1), budget_left=1)
    # When the reconciler takes a batch, Then every record goes back at once, no pass ran
    assert invoke(passes, [record(1, "a"), record(2, "b")], monkeypatch) == {"m1", "m2"}
    assert passes.queue.back == {"r1": 0, "r2": 0}
    assert not passes.runs
