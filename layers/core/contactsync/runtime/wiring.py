"""What every handler builds once per cold start: settings, the store binding, the vault, the
queue. Clients are made here, never in the core logic."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from contactsync.runtime.queue import SqsPassQueue
from contactsync.runtime.settings import get_settings, with_secrets

if TYPE_CHECKING:
    from contactsync.runtime.sides import Wiring
    from contactsync.store.pass_store import DynamoDoorbell
    from contactsync.sync.runner import PassRunner


@lru_cache(maxsize=1)
def bind_store() -> None:
    from contactsync.store import audit, models  # noqa: PLC0415 - pynamodb where used

    s = get_settings()
    models.configure(s.table_name, s.dynamodb_endpoint_url, s.region)
    audit.keep_activity_for(s.activity_retention_days)


@lru_cache(maxsize=1)
def build_queue() -> SqsPassQueue:
    return SqsPassQueue(get_settings().sync_queue_url)


@lru_cache(maxsize=1)
def webhook_key() -> str:
    """The key that signs Graph clientStates: from SSM once per cold start, like the secrets."""
    import boto3  # noqa: PLC0415

    s = get_settings()
    if s.secrets_path and not s.webhook_key:
        s = with_secrets(s, boto3.client("ssm", region_name=s.region), only=["webhook_key"])
    return s.webhook_key


@lru_cache(maxsize=1)
def build_doorbell() -> DynamoDoorbell:
    from contactsync.store.pass_store import DynamoDoorbell  # noqa: PLC0415

    bind_store()
    return DynamoDoorbell()


@lru_cache(maxsize=1)
def build_wiring() -> Wiring:
    import boto3  # noqa: PLC0415

    from contactsync.auth.vault import TokenVault  # noqa: PLC0415
    from contactsync.runtime.sides import Wiring  # noqa: PLC0415

    bind_store()
    s = get_settings()
    if s.secrets_path:
        s = with_secrets(s, boto3.client("ssm", region_name=s.region))
    vault = TokenVault(boto3.client("kms", region_name=s.region), s.token_key_id)
    return Wiring(settings=s, vault=vault)


@lru_cache(maxsize=1)
def build_passes() -> PassRunner:
    from contactsync.sync.runner import PassRunner  # noqa: PLC0415

    return PassRunner(build_wiring(), build_queue())
