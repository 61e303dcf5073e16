"""The one place logger, tracer and metrics are made; every module imports them from here.

Service name and log level come from the POWERTOOLS_* variables that template.yaml sets.
Contact data and secrets never reach a log line: the logger masks the keys below wherever they
appear in structured log fields.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics

SENSITIVE_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "password",
        "authorization",
        "email",
        "emails",
        "phone",
        "phones",
        "address",
        "credentials",
        "clientState",
        "client_state",
    }
)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every sensitive key masked (recursively)."""
    if isinstance(value, dict):
        return {
            k: ("***" if str(k).lower() in SENSITIVE_KEYS or k in SENSITIVE_KEYS else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class RedactingFormatter(logging.Filter):
    """Masks sensitive keys in the structured extras of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in list(record.__dict__):
            if key.lower() in SENSITIVE_KEYS:
                record.__dict__[key] = "***"
            elif isinstance(record.__dict__[key], dict | list):
                record.__dict__[key] = redact(record.__dict__[key])
        return True


logger = Logger(service="contactsync")
logger.addFilter(RedactingFormatter())
metrics = Metrics(namespace="contactsync", service="contactsync")
