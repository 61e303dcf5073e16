"""Attributes stored zlib-compressed: contact JSON (an audit entry's before and after, a pending
op's payload) takes a third of its size or less, and a write costs one unit per KB.

They read what was stored before as plain text (``S``) as well as the compressed form (``B``).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from pynamodb.attributes import Attribute
from pynamodb.constants import BINARY, STRING
from pynamodb.exceptions import AttributeDeserializationError


class _Zipped(Attribute[Any]):
    attr_type = BINARY

    def get_value(self, value: dict[str, Any]) -> Any:
        if BINARY in value:
            return value[BINARY]
        if STRING in value:  # stored before it was compressed
            return value[STRING]
        raise AttributeDeserializationError(self.attr_name, self.attr_type)

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, str):
            return value
        return zlib.decompress(bytes(value)).decode("utf-8")


class ZippedText(_Zipped):
    """A text (JSON already), compressed."""

    def serialize(self, value: Any) -> bytes:
        return zlib.compress(str(value).encode("utf-8"), 9)

    def deserialize(self, value: Any) -> str:
        return self._text(value)


class ZippedJSON(_Zipped):
    """A JSON-ready value, compressed."""

    def serialize(self, value: Any) -> bytes:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return zlib.compress(text.encode("utf-8"), 9)

    def deserialize(self, value: Any) -> Any:
        return json.loads(self._text(value))
