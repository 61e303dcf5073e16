"""The local API Gateway runs a function's invocations one at a time, as Lambda gives an
execution environment one event at a time, and different functions side by side; each
function's Powertools resolver keeps its own request, as in a process of its own."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from local.gateway import ApiRoute, JwtCheck, build_gateway
from sandbox.server import serve


class Overlaps:
    """Counts, per function, how many invocations run at once (the most seen)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.anyone_at_once = 0

    def handler(self, function: str) -> Any:
        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            with self.lock:
                self.running[function] = self.running.get(function, 0) + 1
                self.most[function] = max(self.most.get(function, 0), self.running[function])
                self.anyone_at_once = max(self.anyone_at_once, sum(self.running.values()))
            time.sleep(0.05)
            with self.lock:
                self.running[function] -= 1
            return {"statusCode": 200, "body": "{}"}

        return handle


ROUTES = [
    ApiRoute("ANY", "/admin", "AdminApiFunction", False, re.compile("^/admin$")),
    ApiRoute("ANY", "/hooks", "WebhooksFunction", False, re.compile("^/hooks$")),
]


def test_a_function_takes_its_invocations_one_at_a_time_and_functions_run_side_by_side() -> None:
    # Given a gateway with two functions behind two routes
    seen = Overlaps()
    handlers = {name: seen.handler(name) for name in ("AdminApiFunction", "WebhooksFunction")}
    gateway = build_gateway(JwtCheck("", "", None), routes=ROUTES, handlers=handlers)
    # When eight requests to each arrive at once
    with serve(gateway) as server, ThreadPoolExecutor(16) as pool:
        paths = ["/admin", "/hooks"] * 8
        answers = list(pool.map(lambda p: httpx.get(f"{server.url}{p}", timeout=30), paths))
    # Then every one is answered, never two of one function at once, the two functions together
    assert [a.status_code for a in answers] == [200] * 16
    assert seen.most == {"AdminApiFunction": 1, "WebhooksFunction": 1}
    assert seen.anyone_at_once == 2


def resolver_answering_its_path(path: str) -> Any:
    """A function whose Powertools resolver answers, a moment after it began, the path of the
    request it is serving (as the admin API reads the caller's claims from it)."""
    app = APIGatewayHttpResolver()

    @app.get(path)
    def answer() -> dict[str, str]:
        time.sleep(0.02)
        return {"serving": app.current_event.raw_path}

    return app.resolve


def test_two_functions_resolvers_never_read_each_others_request() -> None:
    # Given two functions each answering with a Powertools resolver
    handlers = {
        "AdminApiFunction": resolver_answering_its_path("/admin"),
        "WebhooksFunction": resolver_answering_its_path("/hooks"),
    }
    gateway = build_gateway(JwtCheck("", "", None), routes=ROUTES, handlers=handlers)
    # When requests to both arrive at once
    with serve(gateway) as server, ThreadPoolExecutor(8) as pool:
        paths = ["/admin", "/hooks"] * 6
        answers = list(pool.map(lambda p: httpx.get(f"{server.url}{p}", timeout=30), paths))
    # Then each resolver serves its own request
    assert [a.json()["serving"] for a in answers] == paths
