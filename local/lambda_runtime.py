"""Invoking a function's handler in-process the way the Lambda runtime would."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]

FUNCTIONS = {
    "AdminApiFunction": "functions.admin_api.app",
    "WebhooksFunction": "functions.webhooks.app",
    "SchedulerFunction": "functions.scheduler.app",
    "ReconcilerFunction": "functions.reconciler.app",
}


@dataclass
class LambdaContext:
    """The attributes Powertools and our handlers read from the real context object."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_ms: int = 120_000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

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
        return self.timeout_ms


def handler_for(logical_id: str) -> Handler:
    module = importlib.import_module(FUNCTIONS[logical_id])
    return module.lambda_handler  # type: ignore[no-any-return]


def invoke(logical_id: str, event: dict[str, Any]) -> Any:
    return handler_for(logical_id)(event, LambdaContext(function_name=logical_id))
