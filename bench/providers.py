"""The provider side of each benchmark, one class per provider, so adding one is one class.

A ``ProviderBench`` starts its sandbox (with a per-request latency and its limits on), adds an
account with a folder/group, seeds contacts, describes how a (child) process builds the real
adapter, and knows its API's facts from PROVIDERS.md: page and batch maxima (for the minimum
number of calls) and rate limits (for the rate-limit bound).

Google appears only when ``sandbox.google`` and ``contactsync.providers.google`` import;
otherwise the tables print "google: not available yet".
"""

from __future__ import annotations

import importlib.util
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from contactsync.contacts.model import Contact, Email, Phone

COMPANIES = ("Contoso", "Fabrikam", "Northwind", "Tailspin", "Litware", "Adatum", "Proseware")


def generated_contacts(n: int, *, seed: int, tag: str) -> list[Contact]:
    """``n`` distinct people (unique names, emails and phones), deterministic for a seed."""
    rng = random.Random(seed)
    people = []
    for i in range(n):
        given, family = f"{tag.title()}{i}", rng.choice(("Moss", "Park", "Ruiz", "Silva", "Lee"))
        people.append(
            Contact(
                given_name=given,
                family_name=family,
                emails=(Email(f"{given}.{family}@{tag}.example".lower(), "work", True),),
                phones=(Phone(f"+1 202 555 {i % 10_000:04d}", "work", True),),
                organization=rng.choice(COMPANIES),
                job_title=rng.choice(("Engineer", "Buyer", "Director", "Analyst")),
            )
        )
    return people


@dataclass(frozen=True)
class ProviderCalls:
    http: int  # requests on the wire
    units: int  # what the provider's limits count (Graph: each $batch sub-request)
    reads: int = 0
    writes: int = 0


class ProviderBench(Protocol):
    name: str
    page_max: int  # the API's largest listing page
    create_batch_max: int  # contacts per create call

    def start(self, workdir: Path, latency_ms: int) -> None: ...

    def add_account(self, label: str) -> dict[str, Any]:
        """A mailbox/user with a folder/group; returns the spec a child needs to build a side."""
        ...

    def add_contacts(self, account: dict[str, Any], people: Sequence[Contact]) -> None: ...

    def count_contacts(self, account: dict[str, Any]) -> int: ...

    def calls(self) -> ProviderCalls: ...

    def rate_bound(self, calls: ProviderCalls, latency_ms: int) -> float:
        """The least time the provider's limits allow for these calls, in seconds."""
        ...

    def limits_text(self) -> str: ...

    def stop(self) -> None: ...


# --- Microsoft Graph ---------------------------------------------------------------------------


class MicrosoftBench:
    name = "microsoft"
    page_max = 1000  # the sandbox caps odata.maxpagesize at 1000 (undocumented for contacts)
    create_batch_max = 20  # JSON batching

    def __init__(self) -> None:
        self._running: Any = None

    def start(self, workdir: Path, latency_ms: int) -> None:
        from sandbox.graph import GraphSandbox, start_graph_sandbox

        self._running = start_graph_sandbox(workdir, sandbox=GraphSandbox(latency_ms=latency_ms))

    @property
    def sandbox(self) -> Any:
        return self._running.sandbox

    def add_account(self, label: str) -> dict[str, Any]:
        sb = self.sandbox
        user = sb.add_user(f"{label}@bench.example", label)
        folder = sb.add_folder(user, "CRM contacts")
        return {
            "provider": self.name,
            "base_url": self._running.graph_url,
            "token": sb.access_token_for(user),
            "user": user,
            "folder": folder,
        }

    def add_contacts(self, account: dict[str, Any], people: Sequence[Contact]) -> None:
        from contactsync.providers.microsoft.mapping import to_graph

        for person in people:
            self.sandbox.create_contact(account["user"], account["folder"], to_graph(person))

    def count_contacts(self, account: dict[str, Any]) -> int:
        return len(self.sandbox.folder_contacts(account["user"], account["folder"]))

    def calls(self) -> ProviderCalls:
        with self.sandbox.lock:
            seen = list(self.sandbox.requests)
        top = [r for r in seen if not r["batched"]]
        units = len([r for r in seen if r["batched"]]) + len(
            [r for r in top if r["path"].lower() != "$batch"]
        )
        writes = len([r for r in seen if r["method"] in ("POST", "PATCH", "DELETE")])
        return ProviderCalls(http=len(top), units=units, writes=writes)

    def rate_bound(self, calls: ProviderCalls, latency_ms: int) -> float:
        limits = self.sandbox.limits
        window_bound = limits.window_seconds * ((max(calls.units, 1) - 1) // limits.budget)
        concurrency_bound = calls.http * latency_ms / 1000 / limits.concurrency
        return float(max(window_bound, concurrency_bound))

    def limits_text(self) -> str:
        limits = self.sandbox.limits
        return (
            f"Graph: {limits.budget:,} requests / {limits.window_seconds:.0f} s per mailbox, "
            f"{limits.concurrency} concurrent"
        )

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()


# --- Google People -----------------------------------------------------------------------------

GOOGLE_WRITES = frozenset(
    {
        "createContact",
        "batchCreateContacts",
        "batchUpdateContacts",
        "batchDeleteContacts",
        "updateContact",
        "deleteContact",
        "contactGroups.create",
        "contactGroups.members.modify",
    }
)


class GoogleBench:
    name = "google"
    page_max = 1000  # connections.list pageSize maximum
    create_batch_max = 200  # people:batchCreateContacts

    def __init__(self) -> None:
        self._running: Any = None

    def start(self, workdir: Path, latency_ms: int) -> None:
        from sandbox.google import GoogleSandbox, start_google_sandbox

        self._running = start_google_sandbox(sandbox=GoogleSandbox(latency_ms=latency_ms))

    @property
    def sandbox(self) -> Any:
        return self._running.sandbox

    def add_account(self, label: str) -> dict[str, Any]:
        sb = self.sandbox
        email = f"{label}@bench.example"
        sb.add_user(email, label)
        group = sb.add_group(email, "CRM contacts")
        return {
            "provider": self.name,
            "base_url": self._running.people_url,
            "token": sb.token_for(email),
            "email": email,
            "group": group,
        }

    def add_contacts(self, account: dict[str, Any], people: Sequence[Contact]) -> None:
        from contactsync.providers.google.mapping import to_person

        for person in people:
            self.sandbox.add_contact(account["email"], to_person(person), groups=[account["group"]])

    def count_contacts(self, account: dict[str, Any]) -> int:
        group = account["group"]
        return sum(
            1
            for p in self.sandbox.contacts(account["email"])
            if any(
                (m.get("contactGroupMembership") or {}).get("contactGroupResourceName") == group
                for m in p.get("memberships") or []
            )
        )

    def calls(self) -> ProviderCalls:
        stats = dict(self.sandbox.stats_snapshot())
        total = int(stats.get("total", 0))
        writes = sum(int(v) for k, v in stats.items() if k in GOOGLE_WRITES)
        return ProviderCalls(http=total, units=total, reads=total - writes, writes=writes)

    def rate_bound(self, calls: ProviderCalls, latency_ms: int) -> float:
        quota = self.sandbox.quota  # per user per minute
        reads = 60.0 * ((max(calls.reads, 1) - 1) // quota["read"])
        writes = 60.0 * ((max(calls.writes, 1) - 1) // quota["write"])
        mutations_in_a_row = calls.writes * latency_ms / 1000  # Google: one mutation at a time
        return max(reads, writes, mutations_in_a_row)

    def limits_text(self) -> str:
        quota = self.sandbox.quota
        return (
            f"Google: {quota['read']} reads and {quota['write']} writes per minute per user, "
            "mutations one at a time"
        )

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()


def _importable(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:
        return False


PROVIDERS: dict[str, tuple[Callable[[], ProviderBench], tuple[str, ...]]] = {
    "microsoft": (MicrosoftBench, ("sandbox.graph", "contactsync.providers.microsoft")),
    "google": (GoogleBench, ("sandbox.google", "contactsync.providers.google")),
}


def available() -> list[tuple[str, Callable[[], ProviderBench] | None]]:
    """Every provider in table order, with its factory or None when it is not there yet.
    ``BENCH_PROVIDERS=microsoft`` (comma-separated) keeps only those, for a quicker run."""
    wanted = [p for p in os.environ.get("BENCH_PROVIDERS", "").split(",") if p]
    return [
        (name, factory if _importable(*needs) else None)
        for name, (factory, needs) in PROVIDERS.items()
        if not wanted or name in wanted
    ]


def not_available(name: str) -> str:
    return f"{name}: not available yet"
