"""The benchmark scripts at a tiny scale, so they cannot rot: every table runs, and the webhook
and cost tables are checked closely."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from contactsync.store.models import configure

from bench import cost, webhook
from bench.__main__ import TABLES, runner
from bench.handlers import reset_cold_start
from bench.world import World
from local.aws import LocalAws


@pytest.fixture
def world(local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A benchmark world on the session's local AWS; the store and settings are put back after."""
    monkeypatch.setenv("BENCH_SCALE", "0.05")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    saved = dict(os.environ)
    try:
        yield World(aws=local_aws)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        configure(local_aws.table_name, local_aws.dynamodb_url, local_aws.region)
        reset_cold_start()


def test_the_webhook_table_times_each_request_and_counts_coalesced_messages(world) -> None:
    # Given the webhooks function in process on DynamoDB Local
    # When the webhook table runs at a tiny scale
    table = webhook.run(world)
    # Then every case has timings, and each batch sent one message per connection, while a
    # burst with a pass request already waiting sent none
    assert len(table.rows) == 5
    ten = next(v for k, v in table.figures.items() if "10 connections" in k)
    one = next(v for k, v in table.figures.items() if k.startswith("Graph batch: 100"))
    burst = next(v for k, v in table.figures.items() if "burst" in k)
    assert (ten["messages"], one["messages"], burst["messages"]) == (10, 1, 0)
    assert all(v["p50"] > 0 and v["p99"] >= v["p50"] for v in table.figures.values())
    assert "p99" in table.render()


def test_the_cost_table_prices_measured_counts(world) -> None:
    # Given the webhook figures of this run (the cost table measures the rest itself)
    world.results["webhook"] = webhook.run(world)
    # When the cost table runs
    table = cost.run(world)
    # Then both scenarios have a positive monthly total made of the five priced items, judged
    # against its target, and the item that dominates named
    totals = table.figures["totals"]
    assert set(totals) == {"microsoft (push)", "google (polling)"}
    assert all(total > 0 for total in totals.values())
    assert [row[0] for row in table.rows] == [
        "Lambda requests",
        "Lambda compute",
        "SQS FIFO requests",
        "DynamoDB reads",
        "DynamoDB writes",
        "total",
        "target",
        "dominates",
    ]
    assert all(cell.split(": ")[-1] in ("met", "NOT MET") for cell in table.rows[-2][-2:])
    priced = [row[0] for row in table.rows[:5]]
    assert all(cell.rsplit(" (", 1)[0] in priced for cell in table.rows[-1][-2:])


@pytest.mark.parametrize("name", [t for t in TABLES if t not in ("webhook", "cost")])
def test_every_table_runs_at_a_tiny_scale(world, monkeypatch: pytest.MonkeyPatch, name) -> None:
    # Given the smallest scale each table allows
    monkeypatch.setenv("BENCH_SCALE", "0.01")
    # When the table runs
    table = runner(name)(world)
    # Then it measured something and prints it
    assert table.rows, f"{name} printed no rows"
    assert table.render().startswith("== ")
