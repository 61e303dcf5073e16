"""Provider health for ``GET /status`` and the public status page: pass outcomes of the last
minutes, per provider, and whether it is degraded. Nothing of any tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contactsync.store.models import iso
from contactsync.store.pass_outcomes import pass_outcomes

STATUS_PROVIDERS = ("microsoft", "google", "carddav", "pipedrive")
PROVIDER_NAMES = {
    "microsoft": "Microsoft 365",
    "google": "Google Contacts",
    "carddav": "CardDAV",
    "pipedrive": "CRM",
}
STATUS_WINDOW_MINUTES = 15
DEGRADED_SHARE = 0.20  # more than this share of passes in error ...
DEGRADED_MIN_PASSES = 5  # ... out of at least this many


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    passes: int
    errors: int
    error_codes: tuple[str, ...]

    @property
    def degraded(self) -> bool:
        return self.passes >= DEGRADED_MIN_PASSES and self.errors > DEGRADED_SHARE * self.passes

    def view(self) -> dict[str, Any]:
        share = self.errors / self.passes if self.passes else 0.0
        return {
            "provider": self.provider,
            "passes": self.passes,
            "errors": self.errors,
            "error_share": round(share, 3),
            "error_codes": list(self.error_codes),
            "degraded": self.degraded,
        }


def service_status(now: datetime) -> dict[str, Any]:
    """Per provider: passes and errors in the last 15 minutes, and whether it is degraded."""
    passes = dict.fromkeys(STATUS_PROVIDERS, 0)
    errors = dict.fromkeys(STATUS_PROVIDERS, 0)
    codes: dict[str, set[str]] = {p: set() for p in STATUS_PROVIDERS}
    for item in pass_outcomes(STATUS_PROVIDERS, now, STATUS_WINDOW_MINUTES):
        passes[item.provider] += int(item.passes or 0)
        errors[item.provider] += int(item.errors or 0)
        codes[item.provider].update(item.error_codes or ())
    health = [
        ProviderHealth(p, passes[p], errors[p], tuple(sorted(codes[p]))) for p in STATUS_PROVIDERS
    ]
    return {
        "window_minutes": STATUS_WINDOW_MINUTES,
        "as_of": iso(now),
        "degraded": any(h.degraded for h in health),
        "providers": [h.view() for h in health],
    }


def public_status(now: datetime) -> dict[str, Any]:
    """What the public status page shows: per provider working or degraded, and when, from the
    same figures as :func:`service_status` but without counts or error codes."""
    full = service_status(now)
    return {
        "as_of": full["as_of"],
        "window_minutes": full["window_minutes"],
        "degraded": full["degraded"],
        "providers": [
            {
                "provider": p["provider"],
                "name": PROVIDER_NAMES.get(p["provider"], p["provider"]),
                "status": "degraded" if p["degraded"] else "working",
            }
            for p in full["providers"]
        ],
    }
