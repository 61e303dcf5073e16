"""The scan that refuses hostile JSON bodies before any parser sees them."""

from __future__ import annotations

import json

import pytest
from contactsync.runtime.json_body import MAX_BODY_BYTES, MAX_DEPTH, body_problem
from hypothesis import given
from hypothesis import strategies as st


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize("brackets", [("[", "]"), ('{"a":', "}")])
def test_a_body_nested_too_deep_is_refused(depth: int, brackets: tuple[str, str]) -> None:
    body = '{"direction": ' + nested(depth, *brackets) + "}"
    problem = body_problem(body)
    # (100,000 deep is also larger than a body may be: refused for that first, with a 413)
    assert problem is not None and problem.message.endswith(("levels", "bytes"))
    assert problem.status == (413 if len(body) > MAX_BODY_BYTES else 400)


def test_an_integer_of_5000_digits_is_refused() -> None:
    problem = body_problem('{"direction": ' + "9" * 5000 + "}")
    assert problem is not None and "number" in problem.message


def test_a_long_string_of_digits_and_brackets_is_only_a_string() -> None:
    # Digits and brackets inside a string (escaped quotes included) are not numbers nor depth
    assert body_problem(json.dumps({"folder_id": "9" * 500 + "[" * 100 + '\\"'})) is None


def test_a_body_too_large_is_refused_with_413() -> None:
    problem = body_problem(json.dumps({"folder_id": "x" * 70_000}))
    assert problem is not None and problem.status == 413


def test_what_the_api_takes_passes() -> None:
    assert body_problem(None) is None
    assert body_problem(b"") is None
    assert body_problem(json.dumps({"keep": "12", "merge": ["1", "2"]})) is None
    assert body_problem(nested(MAX_DEPTH)) is None


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_any_json_within_the_bounds_passes(value: object) -> None:
    # Strings of any content (brackets, quotes, backslashes, digits) never count
    if depth_of(value) <= MAX_DEPTH:
        assert body_problem(json.dumps(value)) is None
        assert body_problem(json.dumps(value, ensure_ascii=False).encode()) is None
