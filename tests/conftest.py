"""Shared fixtures. The AWS ones: one local AWS stack per pytest worker, a fresh table per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from contactsync.store.models import configure

from local.aws import LocalAws, create_table
from local.aws import local_aws as local_aws_stack


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    """DynamoDB Local + moto (SQS, KMS) with the template's resources; env vars point at them."""
    with local_aws_stack() as aws:
        saved = {name: os.environ.get(name) for name in aws.env()}
        os.environ.update(aws.env())
        configure(aws.table_name, aws.dynamodb_url, aws.region)
        try:
            yield aws
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def table(local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty table built from template.yaml; the store points at it for this test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    dynamodb = local_aws.client("dynamodb")
    create_table(dynamodb, name)
    configure(name, local_aws.dynamodb_url, local_aws.region)
    monkeypatch.setenv("TABLE_NAME", name)
    try:
        yield name
    finally:
        configure(local_aws.table_name, local_aws.dynamodb_url, local_aws.region)
        dynamodb.delete_table(TableName=name)


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Report a suite's printed line (chaos, fuzz): shown at the end of the run, under
    "figures", also when the tests ran in xdist workers (which swallow prints)."""

    def report(line: str) -> None:
        print(f"\n{line}")
        request.node.user_properties.append(("figure", line))

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        str(value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "figure"
    ]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
