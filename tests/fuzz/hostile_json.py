"""JSON bodies built to break a parser rather than a schema: nested 1,000 or 100,000 deep, an
integer of thousands of digits (past Python's 4,300-digit limit), wherever a value may go."""

from __future__ import annotations

import json

from hypothesis import strategies as st

DEPTHS = (1_000, 100_000)

# A placeholder json.dumps leaves alone, replaced by the hostile text afterwards.
_HOLE = "__HOSTILE_VALUE__"


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


hostile_values = st.one_of(
    st.builds(nested, st.sampled_from(DEPTHS), st.sampled_from(["array", "object"])),
    st.integers(min_value=4_301, max_value=6_000).map(lambda n: "9" * n),
    st.integers(min_value=4_301, max_value=6_000).map(lambda n: "-1" + "0" * n + ".5e3"),
)


def hostile_bodies(fields: list[str]) -> st.SearchStrategy[bytes]:
    """A hostile value alone, or under one of ``fields`` (the route's own), or in a list."""
    where = st.one_of(
        st.just(_HOLE),
        st.sampled_from(fields or ["value"]).map(lambda name: {name: _HOLE}),
        st.sampled_from(fields or ["value"]).map(lambda name: {name: [_HOLE]}),
    )
    return st.builds(
        lambda shape, value: json.dumps(shape).replace(f'"{_HOLE}"', value).encode(),
        where,
        hostile_values,
    )
