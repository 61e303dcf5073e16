"""The one grouping function matching and the duplicates page share."""

from __future__ import annotations

from collections.abc import Sequence

from contactsync.engine.grouping import linked_groups
from hypothesis import given
from hypothesis import strategies as st


def test_items_connected_through_shared_keys_form_one_group_in_first_seen_order() -> None:
    # Given a and b sharing k1, b and c sharing k2, d alone, e and f sharing k3
    keys = {"a": {"k1"}, "b": {"k1", "k2"}, "c": {"k2"}, "d": {"k4"}, "e": {"k3"}, "f": {"k3"}}
    # When grouped
    groups = linked_groups(keys)
    # Then a-b-c and e-f, in the order their first item was given, with the linking keys
    assert [(g.items, g.keys) for g in groups] == [
        (("a", "b", "c"), ("k1", "k2")),
        (("e", "f"), ("k3",)),
    ]


def test_a_key_links_only_when_the_rule_says_so() -> None:
    # Given two items of one side and one of the other holding keys
    keys = {("crm", "1"): {"x", "y"}, ("crm", "2"): {"x"}, ("provider", "p"): {"y"}}

    def both_sides(key: str, holders: Sequence[tuple[str, str]]) -> bool:
        return len({side for side, _ in holders}) == 2

    # When only keys held on both sides link
    groups = linked_groups(keys, both_sides)
    # Then "x" (held by two CRM items) links nothing
    assert [(g.items, g.keys) for g in groups] == [((("crm", "1"), ("provider", "p")), ("y",))]


def _partition(keys: dict[int, set[str]]) -> set[frozenset[int]]:
    """The same question answered by union-find, for comparison."""
    parent = {item: item for item in keys}

    def root(item: int) -> int:
        while parent[item] != item:
            item = parent[item]
        return item

    first: dict[str, int] = {}
    for item, item_keys in keys.items():
        for key in item_keys:
            parent[root(item)] = root(first.setdefault(key, item))
    groups: dict[int, set[int]] = {}
    for item in keys:
        groups.setdefault(root(item), set()).add(item)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@given(st.dictionaries(st.integers(0, 30), st.sets(st.sampled_from("abcdefgh"), max_size=3)))
def test_the_groups_are_the_connected_components(keys: dict[int, set[str]]) -> None:
    groups = linked_groups(keys)
    assert {frozenset(g.items) for g in groups} == _partition(keys)
    assert sum(len(g.items) for g in groups) == len({i for g in groups for i in g.items})
