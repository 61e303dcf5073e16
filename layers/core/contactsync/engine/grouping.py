"""Grouping things that are connected through the keys they share (pure).

Matching and the duplicates page ask the same question: which contacts hang together because
they share a match key, directly or through each other? Each item has a set of keys; a key
*links* its holders when the caller says it does (held on both sides, held twice, …). A group is
a connected component of items through linking keys, with the linking keys that connect it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)


@dataclass(frozen=True)
class Group(Generic[Item]):
    """Items connected through shared keys; ``keys`` are the linking keys between them, the
    smallest key of the first item first."""

    items: tuple[Item, ...]
    keys: tuple[str, ...]


def held_twice(key: str, holders: Sequence[Hashable]) -> bool:
    """The default rule: a key links its holders when more than one item holds it."""
    return len(holders) > 1


def linked_groups(
    keys: Mapping[Item, set[str]],
    links: Callable[[str, Sequence[Item]], bool] = held_twice,
) -> list[Group[Item]]:
    """Groups of items connected through keys that ``links(key, holders)`` accepts.

    Items in no linking key belong to no group. Groups come in the order of their first item in
    ``keys``; within a group, items and keys in the order they are reached from it (deterministic
    for the same input).
    """
    holders: dict[str, list[Item]] = {}
    for item, item_keys in keys.items():
        for key in item_keys:
            holders.setdefault(key, []).append(item)
    linking = {key for key, held_by in holders.items() if links(key, held_by)}
    seen: set[Item] = set()
    groups: list[Group[Item]] = []
    for start, start_keys in keys.items():
        if start in seen or not start_keys & linking:
            continue
        items, group_keys, todo = [start], [], [start]
        seen.add(start)
        while todo:
            for key in sorted(keys[todo.pop()] & linking):
                if key in group_keys:
                    continue
                group_keys.append(key)
                for other in holders[key]:
                    if other not in seen:
                        seen.add(other)
                        items.append(other)
                        todo.append(other)
        groups.append(Group(tuple(items), tuple(group_keys)))
    return groups
