"""Request bodies checked before anything parses them as JSON.

A body nested thousands deep makes a recursive parser raise (or exhaust the stack), and an
integer of thousands of digits makes Python's ``int`` refuse it: both used to answer 500. Our
bodies are small and flat, so one linear scan (no recursion, no parsing) bounds their size, their
depth and the length of their numbers before the JSON parser sees them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 16
MAX_NUMBER_CHARS = 40

# A string (skipped whole, escapes included), a bracket, or a number.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]|-?[0-9][0-9.eE+-]*')


class BodyProblem(NamedTuple):
    status: int
    message: str


def body_problem(body: str | bytes | None) -> BodyProblem | None:
    """What makes ``body`` unacceptable as a JSON request body, or None when it may be parsed."""
    if not body:
        return None
    if len(body) > MAX_BODY_BYTES:
        return BodyProblem(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    depth = 0
    for token in _TOKEN.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return BodyProblem(
                    400, f"the request body is nested deeper than {MAX_DEPTH} levels"
                )
        elif first in "]}":
            depth -= 1
        elif first != '"' and len(token.group()) > MAX_NUMBER_CHARS:
            return BodyProblem(
                400, f"the request body holds a number longer than {MAX_NUMBER_CHARS} characters"
            )
    return None
