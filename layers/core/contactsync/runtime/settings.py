"""Settings, read once from the environment (what template.yaml and the local stack set).

Nothing else in the code reads ``os.environ``: handlers call ``get_settings()`` and pass what they
need down.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field


class Settings(BaseModel):
    stage: str = "local"
    region: str = "us-east-1"
    table_name: str = "contactsync"
    dynamodb_endpoint_url: str | None = None
    sync_queue_url: str = ""
    token_key_id: str = ""

    # Where providers reach us: OAuth redirects and webhook URLs are built on this.
    public_base_url: str = "http://127.0.0.1:3000"

    microsoft_client_id: str = ""
    microsoft_client_secret: str = Field(default="", repr=False)
    microsoft_authority: str = "https://login.microsoftonline.com/common"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    microsoft_ca_bundle: str | None = None  # only for a local identity sandbox with its own CA

    google_client_id: str = ""
    google_client_secret: str = Field(default="", repr=False)
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    google_people_base_url: str = "https://people.googleapis.com"
    # Google: "writes may have a propagation delay of several minutes for sync requests". A
    # create whose answer was lost is looked for (by its tag, or as a deletion) only after this.
    google_listing_lag_seconds: float = 300.0

    # CardDAV servers are the user's own (iCloud, Fastmail, Nextcloud): https only, except for
    # the local stack's server on loopback.
    carddav_allow_http: bool = False

    pipedrive_base_url: str = "https://api.pipedrive.com"
    pipedrive_client_id: str = ""
    pipedrive_client_secret: str = Field(default="", repr=False)
    pipedrive_oauth_url: str = "https://oauth.pipedrive.com"

    # Signs the clientState of Graph subscriptions, so notifications are checked without a read.
    webhook_key: str = Field(default="", repr=False)

    # SSM Parameter Store path of the client secrets (SecureStrings), read once per cold start
    # for any secret not given directly (the local stack gives them directly).
    secrets_path: str = ""

    # How long the activity log (it holds contact snapshots) keeps an entry.
    activity_retention_days: int = Field(default=90, ge=1, le=3650)

    # The reconciler's pass budget (well under the Lambda timeout) and the lease on a connection.
    # Each pass's budget is also bounded by the invocation's remaining time less the margin (the
    # pass's reads, its last chunk, letting go); with less than the minimum left, the pass is not
    # started and its message goes back on the queue at once.
    pass_budget_seconds: float = 60.0
    pass_margin_seconds: float = 20.0
    # Provider health (GET /status) is counted in memory and written at most this often per
    # provider by each reconciler container, not once per pass (see sync/health.py).
    health_flush_seconds: float = 30.0
    pass_min_seconds: float = 5.0
    # The passes of one batch's connections run at once, at most this many (a FIFO batch holds
    # at most 10 messages); one connection's passes never overlap.
    passes_at_once: int = Field(default=10, ge=1, le=10)
    lease_seconds: int = 150

    # Polling and subscription renewal.
    poll_min_seconds: int = 60
    poll_max_seconds: int = 900
    poll_floor_seconds: int = 30  # what the People API's per-user quota allows at most
    safety_poll_seconds: int = 3600
    # Every connection lists both sides in full this often: it catches what a lost push or a
    # change feed missed (CRM deletes are only pushed).
    full_listing_seconds: int = 86_400
    # Creates, deletes and unlinks a pass sees wait this long for the rest of their burst, so
    # the mass-change guard judges a burst whole however its pushes are spread over passes.
    change_settle_seconds: float = 30.0
    subscription_minutes: int = 4200

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = name.upper()
            if key in env and env[key] != "":
                values[name] = env[key]
        if "region" not in values and env.get("AWS_REGION"):
            values["region"] = env["AWS_REGION"]
        return cls.model_validate(values)


SECRET_PARAMETERS = {
    "microsoft_client_secret": "microsoft-client-secret",
    "google_client_secret": "google-client-secret",
    "pipedrive_client_secret": "pipedrive-client-secret",
    "webhook_key": "webhook-key",
}


def with_secrets(settings: Settings, ssm: Any, only: Sequence[str] | None = None) -> Settings:
    """``settings`` with every secret it lacks (of ``only``, if given) read from SSM (one call,
    decrypted).

    Secrets live only as SecureStrings under ``secrets_path`` and in this process's memory: never
    in the template, an environment variable or a log.
    """
    wanted = {
        field: f"{settings.secrets_path.rstrip('/')}/{name}"
        for field, name in SECRET_PARAMETERS.items()
        if not getattr(settings, field) and (only is None or field in only)
    }
    if not settings.secrets_path or not wanted:
        return settings
    found = ssm.get_parameters(Names=list(wanted.values()), WithDecryption=True)
    values = {p["Name"]: p["Value"] for p in found.get("Parameters", [])}
    return settings.model_copy(
        update={field: values[name] for field, name in wanted.items() if name in values}
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
