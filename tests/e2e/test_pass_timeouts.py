"""Passes that fit the reconciler's timeout, on the local stack whose Lambda runtime cuts an
invocation off at the function's timeout as Lambda does.

Ten slow connections arrive in one SQS batch. Run two at a time they would outlive the
invocation: it would be cut off and the whole batch, finished passes included, would come back
and run again. Each pass's budget is bounded by the time left instead, and the connections not
started in time go back on the queue at once.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from contactsync.runtime import wiring
from contactsync.sync.batch import COME_BACK

from local.demo import FOLDER_NAME, Api, seed
from local.lambda_runtime import InvocationTimedOut, LambdaContext, cut_off_at_timeout
from local.stack import LocalStack
from tests.e2e.helpers import StackOptions

pytestmark = pytest.mark.e2e

TIMEOUT = 12.0  # the reconciler's, in this stack (the template's is 120 s)
CONNECTIONS = 10
CRM_LATENCY_MS = 350  # every CRM call: a pass takes a few seconds


STACK: StackOptions = {
    "pass_budget_seconds": 6,
    "reconciler_timeout": TIMEOUT,
    # Two passes at a time: ten at once would all fit the invocation.
    "extra_env": {"PASS_MARGIN_SECONDS": "3", "PASS_MIN_SECONDS": "2", "PASSES_AT_ONCE": "2"},
}


def test_the_local_runtime_cuts_an_invocation_off_at_its_timeout() -> None:
    # Given a handler that would run past its function's timeout
    seen: list[int] = []

    def slow(event: dict[str, Any], context: Any) -> str:
        seen.append(context.get_remaining_time_in_millis())
        time.sleep(3)
        return "finished"

    cut_off = cut_off_at_timeout(slow, 0.5)
    # When it is invoked, Then it is cut off after half a second, having seen its time left
    started = time.monotonic()
    with pytest.raises(InvocationTimedOut):
        cut_off({}, LambdaContext(function_name="ReconcilerFunction"))
    assert time.monotonic() - started < 2
    assert 0 < seen[0] <= 500
    # And without an override each function gets its template Timeout
    assert LambdaContext(function_name="ReconcilerFunction").timeout_ms == 120_000
    assert LambdaContext(function_name="WebhooksFunction").timeout_ms == 10_000


def test_ten_slow_connections_in_one_batch_neither_time_out_nor_run_twice(
    stack: LocalStack,
) -> None:
    # Given ten Google connections of one user, configured, their first passes waiting together
    demo, _ = seed(stack, persons=3, contacts=3)
    api = Api(stack, demo.token)
    api.connect_crm()
    ids = []
    for _ in range(CONNECTIONS):
        connection_id = api.connect_google()
        api.choose_folder(connection_id, FOLDER_NAME, direction="to_provider")
        ids.append(connection_id)
    passes = wiring.build_passes()
    runs: Counter[tuple[str, str]] = Counter()
    asked_back: Counter[tuple[str, str]] = Counter()  # passes that asked to run again
    not_started: list[str] = []
    run, budget = passes.run, passes.budget

    def counted_run(message: Any, budget_seconds: float | None = None) -> Any:
        key = (message.connection_id, message.reason)
        runs[key] += 1
        result = run(message, budget_seconds=budget_seconds)
        if result.status in COME_BACK:
            # Ten syncs into one Google account, two at a time, may make the same contact at
            # once: the second write is refused and its pass asks to run again (recheck).
            asked_back[key] += 1
        return result

    def watched_budget(remaining_seconds: float) -> float | None:
        granted = budget(remaining_seconds)
        if granted is None:
            not_started.append(f"{remaining_seconds:.1f}")
        return granted

    passes.run, passes.budget = counted_run, watched_budget  # type: ignore[method-assign]
    stack.poller.pause()
    try:
        for connection_id in ids:
            api.start(connection_id)
        stack.pipedrive.sandbox.latency_ms = CRM_LATENCY_MS
    finally:
        stack.poller.resume()
    try:
        # When the reconciler works through them
        views = [api.wait_until_active(cid, timeout=240) for cid in ids]
    finally:
        stack.pipedrive.sandbox.latency_ms = 0
        passes.run, passes.budget = run, budget  # type: ignore[method-assign]
    # Then every connection finished its first sync
    assert [v["state"] for v in views] == ["active"] * CONNECTIONS
    # And no invocation timed out, and no connection's first pass ran again unless it asked to
    assert stack.poller.timeouts == 0, stack.poller.errors
    assert all(runs[(cid, "start")] >= 1 for cid in ids), runs
    assert {runs[(cid, "start")] - asked_back[(cid, "start")] for cid in ids} <= {0, 1}, runs
    # And the batch did not fit one invocation: some passes were returned unstarted
    assert not_started, "every pass fit: the test did not exercise the timeout"
