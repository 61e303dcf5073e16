"""Hostile webhook requests (hypothesis strategies) and the checker that sends them.

Each request goes to one of the three webhook routes with a body that must be turned away:
malformed JSON, wrong types, huge bodies (> 1 MB), JSON nested 1,000 or 100,000 deep or with an
integer of thousands of digits, odd Unicode and invalid UTF-8, unknown
subscription ids, a wrong or missing ``clientState``, missing or wrong basic auth. The real
secrets appear only next to something else that is wrong, so no request should be accepted.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.hostile_json import hostile_bodies

GRAPH_PATHS = ("/webhooks/microsoft", "/webhooks/microsoft/lifecycle")
CRM_PATH = "/webhooks/pipedrive"
SHORT_EXAMPLES = 150  # make test
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", SHORT_EXAMPLES))  # make fuzz sets it higher


@dataclass(frozen=True)
class KnownSecrets:
    """A real subscription and CRM webhook on the stack under test."""

    subscription_id: str
    client_state: str
    connection_id: str
    webhook_password: str


@dataclass(frozen=True)
class WebhookRequest:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return f"POST {self.path} {self.query} {self.headers} {self.body[:120]!r}"


# --- bodies --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
odd_text = st.text(
    st.characters(codec=None, categories=("Cs", "Co", "Cn", "Cc", "Zl", "Mn", "So", "Lo")),
    max_size=40,
)


# A URL carries bytes: a lone surrogate has no UTF-8 form, so the client cannot send it (its
# bytes arrive as U+FFFD, the way API Gateway decodes them).
query_text = odd_text.map(lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


not_json = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"[", b"null", b"{not json", b'{"value": [', b"\xff\xfe\x00"]),
    odd_text.map(lambda t: t.encode("utf-8", errors="surrogatepass")),
)
huge = st.integers(min_value=1_048_577, max_value=1_300_000).map(
    lambda n: _dump({"value": [{"subscriptionId": "s", "clientState": "x" * n}]})
)


def graph_bodies(known: KnownSecrets) -> st.SearchStrategy[bytes]:
    sub_id = st.one_of(
        st.just(known.subscription_id), st.text(max_size=250), st.integers(), st.none()
    )
    wrong_state = st.one_of(odd_text, st.integers(), st.none(), st.just(known.client_state + "x"))
    note = st.fixed_dictionaries(
        {"subscriptionId": sub_id},
        optional={
            "clientState": wrong_state,
            "changeType": st.one_of(st.text(max_size=120), st.integers()),
            "lifecycleEvent": st.one_of(
                st.sampled_from(["reauthorizationRequired", "subscriptionRemoved", "missed"]),
                odd_text,
            ),
            "resource": json_values,
        },
    )
    # The real clientState only beside a note that breaks the batch's schema.
    broken_note = st.sampled_from([{"subscriptionId": 7}, {"subscriptionId": ""}, {}])
    real_with_broken = broken_note.map(
        lambda bad: {
            "value": [
                {"subscriptionId": known.subscription_id, "clientState": known.client_state},
                bad,
            ]
        }
    )
    return st.one_of(
        st.fixed_dictionaries({"value": st.lists(note, max_size=3)}).map(_dump),
        real_with_broken.map(_dump),
        st.fixed_dictionaries({"value": json_values}).map(_dump),
        json_values.map(_dump),
        not_json,
        huge,
        hostile_bodies(["value"]),
    )


def crm_bodies() -> st.SearchStrategy[bytes]:
    meta = st.fixed_dictionaries(
        {},
        optional={
            "action": st.one_of(st.text(max_size=60), st.integers()),
            "entity": st.one_of(st.sampled_from(["person", "organization"]), odd_text),
            "entity_id": json_values,
            "timestamp": st.one_of(st.text(max_size=80), st.integers()),
        },
    )
    return st.one_of(
        st.fixed_dictionaries({"meta": meta, "data": json_values}).map(_dump),
        json_values.map(_dump),
        not_json,
        huge,
        hostile_bodies(["meta", "data", "previous"]),
    )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def crm_auth(known: KnownSecrets) -> st.SearchStrategy[dict[str, str]]:
    """Every kind of wrong credential; ``real`` marks the one that is right."""
    return st.one_of(
        st.just({}),
        st.just({"authorization": "Bearer abc"}),
        st.just({"authorization": "Basic !!!not-base64"}),
        st.just({"authorization": "Basic " + base64.b64encode(b"no-colon").decode()}),
        st.just({"authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()}),
        st.text(max_size=80).map(lambda u: {"authorization": _basic(u, "guess")}),
        st.just({"authorization": _basic(known.connection_id, known.webhook_password + "x")}),
        st.just({"authorization": _basic("x" * 200, known.webhook_password)}),
        st.just({"authorization": _basic(known.connection_id, known.webhook_password), "real": ""}),
    )


def webhook_requests(known: KnownSecrets) -> st.SearchStrategy[WebhookRequest]:
    query = st.one_of(
        st.just({}),
        st.just({}),
        st.dictionaries(
            st.sampled_from(["validationToken", "x", "$filter"]), query_text, max_size=2
        ),
    )
    graph = st.builds(
        WebhookRequest,
        path=st.sampled_from(GRAPH_PATHS),
        body=graph_bodies(known),
        headers=st.just({"content-type": "application/json"}),
        query=query,
    )

    def crm_request(auth: dict[str, str], body: bytes, q: dict[str, str]) -> WebhookRequest:
        headers = {k: v for k, v in auth.items() if k != "real"}
        if "real" in auth:
            # (a "meta" anywhere could make it a real delivery)
            body = body if b'"meta"' not in body else b'{"meta": 1}'
        return WebhookRequest(CRM_PATH, body, headers, q)

    crm = st.builds(crm_request, crm_auth(known), crm_bodies(), query)
    return st.one_of(graph, crm)


# --- the checker ---------------------------------------------------------------------------------


def expected_answer(request: WebhookRequest, response: httpx.Response) -> bool:
    """A 4xx, or for Graph's validation handshake (no body) the token echoed as plain text that
    is not to be sniffed, with a 200."""
    if 400 <= response.status_code < 500:
        return True
    handshake = (
        request.path in GRAPH_PATHS and "validationToken" in request.query and not request.body
    )
    return (
        handshake
        and response.status_code == 200
        and response.headers.get("content-type") == "text/plain; charset=utf-8"
        and response.headers.get("x-content-type-options") == "nosniff"
    )


@dataclass
class FuzzReport:
    requests: int = 0
    server_errors: int = 0
    unexpected: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"webhook fuzz: {self.requests} requests, {self.server_errors} 5xx"


def fuzz_webhooks(base_url: str, known: KnownSecrets, *, examples: int = EXAMPLES) -> FuzzReport:
    """Send ``examples`` generated requests to ``base_url``; report what was not turned away."""
    report = FuzzReport()
    http = httpx.Client(base_url=base_url, timeout=30)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=webhook_requests(known))
    def send(request: WebhookRequest) -> None:
        response = http.post(
            request.path, content=request.body, headers=request.headers, params=request.query
        )
        report.requests += 1
        if response.status_code >= 500:
            report.server_errors += 1
        if not expected_answer(request, response):
            report.unexpected.append(f"{response.status_code} for {request.summary()}")

    try:
        send()
    finally:
        http.close()
    return report
