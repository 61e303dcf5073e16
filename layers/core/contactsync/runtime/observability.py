"""The one place logger, tracer and metrics are made; every module imports them from here.

Service name and log level come from the POWERTOOLS_* variables that template.yaml sets. The
tracer is made only where X-Ray tracing is on (see ``capture_lambda_handler``).
Contact data and secrets never reach a log line: every line the logger writes goes through
``redact`` first, which masks the values of sensitive keys (tokens, secrets, emails, phones)
wherever they sit, and e-mail addresses, phone numbers, bearer tokens and JWTs inside any text
(the message, extras, exception traces).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.shared.functions import strtobool

if TYPE_CHECKING:
    from aws_lambda_powertools.logging.types import LogRecord

Handler = TypeVar("Handler", bound=Callable[..., Any])

MASK = "***"

SENSITIVE_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "token_cache",
        "client_secret",
        "password",
        "authorization",
        "email",
        "emails",
        "phone",
        "phones",
        "address",
        "credentials",
        "clientstate",
        "client_state",
        "validationtoken",
        "code_verifier",
    }
)

# Keys Powertools itself writes on every line: left alone so timestamps and ids stay readable.
POWERTOOLS_KEYS = frozenset(
    {
        "level",
        "location",
        "timestamp",
        "service",
        "sampling_rate",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "xray_trace_id",
        "correlation_id",  # the API request's id, the schedule event's id
    }
)

_SECRET_PAIR = re.compile(
    r"""(?ix)
    (["']?\b(?:access_token|refresh_token|id_token|client_secret|password|code_verifier
    |clientstate|client_state)\b["']?\s*[:=]\s*)   # the key and its separator
    (["']?)[^\s"'&,;}]+                             # the value, up to a delimiter
    """
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A phone-like run: optional +, then 7 to 15 digits with spaces, dots, dashes or parentheses.
_PHONE = re.compile(r"(?<![\w.:/-])\+?\(?\d(?:[\s().-]{0,2}\d){6,14}(?![\w:/])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _phone_or_keep(match: re.Match[str]) -> str:
    text = match.group(0)
    if _DATE.match(text):
        return text  # an ISO date (and maybe an hour), not a phone number
    return MASK


def mask_text(text: str) -> str:
    """``text`` with secrets, bearer tokens, JWTs, e-mail addresses and phone numbers masked."""
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _JWT.sub(MASK, text)
    text = _EMAIL.sub(MASK, text)
    return _PHONE.sub(_phone_or_keep, text)


def _sensitive(key: Any) -> bool:
    return str(key).lower() in SENSITIVE_KEYS


def redact(value: Any) -> Any:
    """A copy of ``value`` with sensitive keys masked and every text run through ``mask_text``."""
    if isinstance(value, dict):
        return {k: MASK if _sensitive(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, bytes | bytearray):
        return MASK
    if isinstance(value, bool | int | float) or value is None:
        return value
    return mask_text(str(value))  # exceptions and other objects are written as their text


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, redacted just before they are written."""

    def serialize(self, log: LogRecord) -> str:
        safe: dict[str, Any] = {
            k: v if k in POWERTOOLS_KEYS else MASK if _sensitive(k) else redact(v)
            for k, v in log.items()
        }
        return super().serialize(safe)


logger = Logger(service="contactsync", logger_formatter=RedactingFormatter())
metrics = Metrics(namespace="contactsync", service="contactsync")


def tracing_on() -> bool:
    """X-Ray tracing is on in Lambda (not under SAM local) unless POWERTOOLS_TRACE_DISABLED says
    otherwise: the rule Powertools' Tracer follows."""
    in_lambda = "LAMBDA_TASK_ROOT" in os.environ and "AWS_SAM_LOCAL" not in os.environ
    return in_lambda and not strtobool(os.environ.get("POWERTOOLS_TRACE_DISABLED", "false"))


def capture_lambda_handler(handler: Handler) -> Handler:
    """Powertools' Tracer around a handler where tracing is on; elsewhere the handler itself."""
    if not tracing_on():
        return handler  # no Tracer made: making one imports the X-Ray SDK, on or off
    return cast(Handler, Tracer(service="contactsync").capture_lambda_handler(handler))


# The metrics (CloudWatch EMF, namespace "contactsync") the handlers emit and the alarms watch.
PASS_METRICS = {  # a pass's status -> its metric
    "done": "PassesDone",
    "continue": "PassesContinued",
    "held": "GuardHolds",
    "throttled": "PassesThrottled",
    "failed": "PassesFailed",
    "needs_reauth": "PassesNeedingReauth",
}
PASSES_NOT_STARTED = "PassesNotStarted"
PROVIDER_ERRORS = "ProviderErrors"
PROVIDER_THROTTLES = "ProviderThrottles"
PROPAGATION_DELAY = "PropagationDelay"  # from a pass request's enqueueing to its pass
WEBHOOK_REJECTIONS = "WebhookRejections"
WEBHOOK_ACCEPTED = "WebhookAccepted"


def count(name: str, value: float = 1) -> None:
    if not is_metrics_disabled():  # (Powertools keeps what it does not flush when disabled)
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def milliseconds(name: str, value: float) -> None:
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)
