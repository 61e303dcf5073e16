"""Invoking a function's handler in-process the way the Lambda runtime would.

Each invocation gets the function's ``Timeout`` from ``template.yaml`` (its own, else the
``Globals``): the context counts down from it, and an invocation still running when it ends is cut
off as Lambda cuts it off: the caller gets ``InvocationTimedOut`` (for an SQS batch: the whole
batch comes back after the visibility timeout), and the handler's thread is stopped by an
exception raised into it at its next Python instruction.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from local.aws import load_template

Handler = Callable[[dict[str, Any], Any], Any]

FUNCTIONS = {
    "AdminApiFunction": "functions.admin_api.app",
    "WebhooksFunction": "functions.webhooks.app",
    "SchedulerFunction": "functions.scheduler.app",
    "ReconcilerFunction": "functions.reconciler.app",
}


def _each_resolver_keeps_its_own_request() -> None:
    """Lambda runs each function in a process of its own; here they share one. The Powertools
    resolver keeps the request it answers on ``BaseRouter.current_event``, a class attribute
    every resolver in the process shares, and reads it back through the resolver (its routers
    included). Pinning the request on the resolver itself first gives each function its own, as
    its own process would (a function answers one request at a time: the gateway sees to it)."""
    resolve = ApiGatewayResolver.resolve
    if getattr(resolve, "pins_request", False):
        return

    def resolve_pinned(self: ApiGatewayResolver, event: dict[str, Any], context: Any) -> Any:
        self.current_event = self._to_proxy_event(event)
        self.lambda_context = context
        return resolve(self, event, context)

    resolve_pinned.pins_request = True  # type: ignore[attr-defined]
    setattr(ApiGatewayResolver, "resolve", resolve_pinned)  # noqa: B010 - a method replaced


_each_resolver_keeps_its_own_request()


class InvocationTimedOut(Exception):
    """The invocation ran past the function's timeout and was cut off."""


@lru_cache(maxsize=8)
def function_timeout(logical_id: str) -> float:
    """Seconds, as ``template.yaml`` declares them for the function (Lambda's default: 3)."""
    template = load_template()
    props = template["Resources"].get(logical_id, {}).get("Properties", {})
    default = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    return float(props.get("Timeout", default))


@dataclass
class LambdaContext:
    """The attributes Powertools and our handlers read from the real context object."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_ms: int | None = None  # the template's Timeout of the function, unless given
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if self.timeout_ms is None:
            known = self.function_name in FUNCTIONS
            self.timeout_ms = int(1000 * (function_timeout(self.function_name) if known else 120))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        elapsed_ms = int(1000 * (time.monotonic() - self.started))
        return max(0, int(self.timeout_ms or 0) - elapsed_ms)


def cut_off_at_timeout(handler: Handler, timeout_seconds: float | None = None) -> Handler:
    """``handler`` run as Lambda runs it: the context counts down from the timeout, and an
    invocation past it raises ``InvocationTimedOut`` (its thread is stopped)."""

    def invoke(event: dict[str, Any], context: Any) -> Any:
        if isinstance(context, LambdaContext):
            timeout_ms = None if timeout_seconds is None else int(1000 * timeout_seconds)
            context = dataclasses.replace(
                context, timeout_ms=timeout_ms or context.timeout_ms, started=time.monotonic()
            )
        seconds = (context.get_remaining_time_in_millis() or 1) / 1000
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = handler(event, context)
            except BaseException as exc:  # handed to the caller, as the runtime reports it
                outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"invoke-{context.function_name}", daemon=True)
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            _stop(worker)
            raise InvocationTimedOut(f"{context.function_name} timed out after {seconds:.1f} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")

    return invoke


def _stop(worker: threading.Thread) -> None:
    """Raise InvocationTimedOut inside ``worker`` (at its next Python instruction)."""
    if worker.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.ident), ctypes.py_object(InvocationTimedOut)
        )


def handler_for(logical_id: str, *, timeout_seconds: float | None = None) -> Handler:
    """The function's handler, cut off at its template Timeout (or ``timeout_seconds``)."""
    module = importlib.import_module(FUNCTIONS[logical_id])
    return cut_off_at_timeout(module.lambda_handler, timeout_seconds)


def invoke(logical_id: str, event: dict[str, Any]) -> Any:
    return handler_for(logical_id)(event, LambdaContext(function_name=logical_id))
