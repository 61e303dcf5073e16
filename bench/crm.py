"""The CRM side of the benchmarks: the Pipedrive sandbox, a user with persons, the real adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contactsync.contacts.model import Contact, Email, Phone

from sandbox.pipedrive import RunningPipedrive, start_pipedrive_sandbox
from sandbox.pipedrive.state import BURST_WINDOW_SECONDS


@dataclass
class CrmBench:
    running: RunningPipedrive

    @classmethod
    def start(cls, latency_ms: int) -> CrmBench:
        return cls(start_pipedrive_sandbox(latency_ms=latency_ms))

    @property
    def sandbox(self) -> Any:
        return self.running.sandbox

    def add_user(self, label: str) -> dict[str, Any]:
        """A company of its own (its own daily budget) with one user; the child's side spec."""
        pd = self.sandbox
        company = pd.add_company(f"Bench {label}", contact_sync=True)
        user = pd.add_user(company, label, f"{label}@crm.example")
        return {
            "base_url": self.running.url,
            "token": pd.issue_token(user),
            "user_id": user,
            "company_id": company,
        }

    def seed(self, account: dict[str, Any], n: int, *, seed: int) -> list[int]:
        return list(self.sandbox.seed_persons(account["user_id"], n, seed=seed))

    def as_contacts(self, person_ids: Sequence[int]) -> list[Contact]:
        """The canonical form of seeded persons (to put the same people on a provider side)."""
        pd = self.sandbox
        out = []
        for pid in person_ids:
            p = pd.persons[pid]
            org = pd.orgs[p.org_id].name if p.org_id else ""
            out.append(
                Contact(
                    given_name=p.first_name or "",
                    family_name=p.last_name or "",
                    emails=tuple(Email(e["value"], e["label"], e["primary"]) for e in p.emails),
                    phones=tuple(Phone(x["value"], x["label"], x["primary"]) for x in p.phones),
                    organization=org,
                )
            )
        return out

    def owned(self, account: dict[str, Any]) -> list[Any]:
        pd = self.sandbox
        uid = account["user_id"]
        return [p for p in list(pd.persons.values()) if p.owner_id == uid and not p.deleted]

    def calls(self) -> int:
        return sum(self.sandbox.stats_snapshot().values())

    def rate_bound(self, calls: int) -> float:
        """Requests per user per rolling 2 s: the first burst is free, then one window per burst."""
        burst = self.sandbox.burst_limit
        return BURST_WINDOW_SECONDS * ((max(calls, 1) - 1) // burst)

    def limits_text(self) -> str:
        return f"Pipedrive: {self.sandbox.burst_limit} requests per user per 2 s"

    def stop(self) -> None:
        self.running.stop()
