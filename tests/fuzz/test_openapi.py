"""schemathesis against the running local stack's ``/openapi.json``, with a valid JWT and without.

Cases that fit the schema and cases that do not, for every operation: no answer is a 5xx, and
an answer whose status the document describes matches its schema and content type.
``FUZZ_EXAMPLES`` sets how many (150 for ``make test``; ``make fuzz`` sets more).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from local.gateway import build_gateway
from local.lambda_runtime import handler_for
from local.stack import LocalStack, start_stack
from sandbox.server import serve
from tests.fuzz.hostile_json import hostile_bodies
from tests.fuzz.webhook_requests import EXAMPLES

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@dataclass
class ApiFuzzReport:
    requests: int = 0
    server_errors: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"api fuzz: {self.requests} requests, {self.server_errors} 5xx"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = start_stack(workdir=tmp_path_factory.mktemp("api-fuzz"), schedule_every=3600)
    try:
        yield running
    finally:
        running.stop()


def load_schema(base_url: str) -> Any:
    document = httpx.get(f"{base_url}/openapi.json", timeout=30)
    assert document.status_code == 200, "the stack publishes no /openapi.json"
    return schemathesis.openapi.from_dict(document.json())


def fuzz_api(schema: Any, base_url: str, token: str, *, examples: int = EXAMPLES) -> ApiFuzzReport:
    """Send ``examples`` schemathesis cases, half with the bearer ``token``; report what failed."""
    report = ApiFuzzReport()
    cases = st.one_of(
        schema.as_strategy(generation_mode=GenerationMode.POSITIVE),
        schema.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, signed_in=st.booleans())
    def send(case: Any, signed_in: bool) -> None:
        headers = {"authorization": f"Bearer {token}"} if signed_in else {}
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        report.requests += 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as failure:
            label = f"{case.method} {case.formatted_path} ({'JWT' if signed_in else 'no JWT'})"
            report.failures.append(f"{label}: {response.status_code} {failure}"[:600])

    send()
    return report


def test_the_admin_api_survives_schemathesis(
    stack: LocalStack, figure: Callable[[str], None]
) -> None:
    # Given the published document and a user with a connection of their own
    schema = load_schema(stack.api_url)
    token = stack.token("fuzz-user", "fuzz-company")
    created = httpx.post(
        f"{stack.api_url}/connections",
        json={"provider": "microsoft"},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    # When schemathesis sends its cases, with and without the JWT
    report = fuzz_api(schema, stack.api_url, token)
    figure(report.line())
    # Then nothing answered 5xx and every documented answer matched the document
    assert report.server_errors == 0
    assert report.failures == [], "\n".join(report.failures[:5])


def body_fields(document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    """The top-level fields of an operation's JSON body, per the document."""
    schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
    )
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return sorted(schema.get("properties", {}))


def test_every_admin_route_refuses_hostile_json_with_a_4xx(
    stack: LocalStack, figure: Callable[[str], None]
) -> None:
    # Given every operation of the document, on a connection the caller owns
    token = stack.token("hostile-user", "fuzz-company")
    headers = {"authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{stack.api_url}/connections", json={"provider": "google"}, headers=headers, timeout=30
    )
    assert created.status_code == 201, created.text
    connection_id = created.json()["connection"]["id"]
    document = httpx.get(f"{stack.api_url}/openapi.json", timeout=30).json()
    routes = [
        (method.upper(), path, body_fields(document, operation))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]
    assert len(routes) >= 20
    answers: dict[int, int] = {}
    wrong: list[str] = []

    @settings(
        max_examples=max(2 * len(routes), EXAMPLES // 3),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(route=st.sampled_from(routes), data=st.data())
    def send(route: tuple[str, str, list[str]], data: st.DataObject) -> None:
        method, template, fields = route
        body = data.draw(hostile_bodies(fields))
        path = template.replace("{connection_id}", connection_id).replace(
            "{entry_id}", "2025-03-01T12:00:00.000000Z-000001"
        )
        path = path.replace("{provider}", "google")
        response = httpx.request(
            method,
            f"{stack.api_url}{path}",
            content=body,
            headers={**headers, "content-type": "application/json"},
            params={"state": "crm.x"} if "{provider}" in template else None,
            timeout=60,
        )
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        if not 400 <= response.status_code < 500:
            wrong.append(f"{method} {template}: {response.status_code} for {body[:60]!r}")

    # When each route gets bodies nested 1,000 or 100,000 deep or with 5,000-digit integers
    send()
    figure(
        f"hostile JSON: {sum(answers.values())} requests over {len(routes)} routes, "
        f"answers {dict(sorted(answers.items()))}"
    )
    # Then every answer is a 4xx
    assert wrong == [], "\n".join(wrong[:5])


def test_the_api_checker_catches_a_handler_that_fails_on_unknown_ids(stack: LocalStack) -> None:
    # Given an admin handler variant that crashes where it should answer 404
    real = handler_for("AdminApiFunction")

    def crashes_on_not_found(event: dict[str, Any], context: Any) -> Any:
        result = real(event, context)
        if isinstance(result, dict) and result.get("statusCode") == 404:
            raise RuntimeError("planted: not found is a crash")
        return result

    gateway = build_gateway(stack.issuer.check, handlers={"AdminApiFunction": crashes_on_not_found})
    schema = load_schema(stack.api_url)
    # When the same checker runs against it with a valid JWT
    with serve(gateway) as server:
        report = fuzz_api(schema, server.url, stack.token("u", "c"), examples=40)
    # Then the 5xx are reported
    assert report.server_errors > 0
    assert any("500" in failure for failure in report.failures)
