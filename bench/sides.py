"""The two sides of a measured connection: the real adapters, built as the wiring builds them,
each wrapped to time its calls. Imports no sandbox, so a measured child process stays lean."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from contactsync.providers.base import (
    ChangePage,
    ContactDelete,
    ContactSide,
    ContactUpdate,
    NewContact,
    RemoteContact,
    WriteResult,
)
from contactsync.providers.pipedrive import PipedrivePersons


def build_crm_side(account: dict[str, Any], http: httpx.Client) -> PipedrivePersons:
    """The CRM adapter exactly as ``Wiring.crm_side`` builds it (a new one per pass)."""
    token = account["token"]
    return PipedrivePersons(
        base_url=account["base_url"],
        token=lambda _refresh: token,
        owner_id=int(account["user_id"]),
        client=http,
        burst_wait_s=2.5,
    )


def build_side(account: dict[str, Any], http: httpx.Client) -> ContactSide:
    """The real adapter for an account spec, as the reconciler's wiring would build it."""
    token = account["token"]
    if account["provider"] == "microsoft":
        from contactsync.providers.microsoft import MicrosoftContacts

        return MicrosoftContacts(
            base_url=account["base_url"],
            token=lambda _refresh: token,
            folder_id=account["folder"],
            client=http,
        )
    if account["provider"] == "google":
        from contactsync.providers.google import GoogleContacts

        side: ContactSide = GoogleContacts(
            base_url=account["base_url"],
            token=lambda _refresh: token,
            group_id=account["group"],
            client=http,
        )
        return side
    raise ValueError(f"unknown provider {account['provider']!r}")


class TimedSide:
    """A ``ContactSide`` that adds the seconds spent in each call to ``spent[label]``."""

    def __init__(self, side: ContactSide, label: str, spent: Counter[str]) -> None:
        self._side = side
        self._label = label
        self._spent = spent
        self.name = side.name
        self.carries = side.carries

    @contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._spent[self._label] += time.perf_counter() - started

    def read(self, position: str | None) -> ChangePage:
        with self._timed():
            return self._side.read(position)

    def fetch(self, ids: Sequence[str]) -> dict[str, RemoteContact | None]:
        with self._timed():
            return self._side.fetch(ids)

    def find_tagged(self, tag: str) -> RemoteContact | None:
        with self._timed():
            return self._side.find_tagged(tag)

    def create(self, items: Sequence[NewContact]) -> list[WriteResult]:
        with self._timed():
            return self._side.create(items)

    def update(self, items: Sequence[ContactUpdate]) -> list[WriteResult]:
        with self._timed():
            return self._side.update(items)

    def delete(self, items: Sequence[ContactDelete]) -> list[WriteResult]:
        with self._timed():
            return self._side.delete(items)
