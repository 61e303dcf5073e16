"""The local API Gateway runs a function's invocations one at a time, as Lambda gives an
execution environment one event at a time (the handlers keep the request on a module-wide app),
while different functions answer side by side."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

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


def test_a_function_takes_its_invocations_one_at_a_time_and_functions_run_side_by_side() -> None:
    # Given a gateway with two functions behind two routes
    routes = [
        ApiRoute("ANY", "/admin", "AdminApiFunction", False, re.compile("^/admin$")),
        ApiRoute("ANY", "/hooks", "WebhooksFunction", False, re.compile("^/hooks$")),
    ]
    seen = Overlaps()
    handlers = {name: seen.handler(name) for name in ("AdminApiFunction", "WebhooksFunction")}
    gateway = build_gateway(JwtCheck("", "", None), routes=routes, handlers=handlers)
    # When eight requests to each arrive at once
    with serve(gateway) as server, ThreadPoolExecutor(16) as pool:
        paths = ["/admin", "/hooks"] * 8
        answers = list(pool.map(lambda p: httpx.get(f"{server.url}{p}", timeout=30), paths))
    # Then every one is answered, never two of one function at once, the two functions together
    assert [a.status_code for a in answers] == [200] * 16
    assert seen.most == {"AdminApiFunction": 1, "WebhooksFunction": 1}
    assert seen.anyone_at_once == 2
