"""Mapping items: the linked pairs and the base both sides last agreed on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime

from contactsync.contacts.model import Contact
from contactsync.store.keys import conn_pk
from contactsync.store.models import Mapping, iso, utcnow


def get_mapping(connection_id: str, mapping_id: str) -> Mapping | None:
    try:
        return Mapping.get(conn_pk(connection_id), f"MAP#{mapping_id}", consistent_read=True)
    except Mapping.DoesNotExist:
        return None


def _found(keys: Mapping | None) -> Mapping | None:
    """The mapping an index query found (the index holds keys only): read by its key."""
    if keys is None:
        return None
    try:
        return Mapping.get(keys.pk, keys.sk, consistent_read=True)
    except Mapping.DoesNotExist:
        return None  # deleted since the index was written


def mapping_by_crm_id(connection_id: str, crm_id: str) -> Mapping | None:
    """The mapping of a CRM person (GSI1; eventually consistent like every index)."""
    hash_key = f"CONN#{connection_id}#CRM#{crm_id}"
    query = Mapping.by_crm_id.query(hash_key, Mapping.gsi1sk == "MAP", limit=1)
    return _found(next(iter(query), None))


def mapping_by_provider_id(connection_id: str, provider_id: str) -> Mapping | None:
    """The mapping of a provider contact (GSI2)."""
    hash_key = f"CONN#{connection_id}#PRV#{provider_id}"
    query = Mapping.by_provider_id.query(hash_key, Mapping.gsi2sk == "MAP", limit=1)
    return _found(next(iter(query), None))


def put_mapping(
    connection_id: str,
    *,
    crm_id: str,
    provider_id: str,
    base: Contact,
    crm_version: str = "",
    provider_version: str = "",
    mapping_id: str | None = None,
    detached: str = "",
    holds: dict[str, Contact] | None = None,
    refusals: int = 0,
    now: datetime | None = None,
) -> Mapping:
    """Create or replace a mapping (a new id when ``mapping_id`` is None); keeps ``created_at``."""
    mapping_id = mapping_id or uuid.uuid4().hex
    stamp = iso(now or utcnow())
    mapping = Mapping(conn_pk(connection_id), f"MAP#{mapping_id}")
    mapping.update(
        actions=[
            Mapping.gsi1pk.set(f"CONN#{connection_id}#CRM#{crm_id}"),
            Mapping.gsi1sk.set("MAP"),
            Mapping.gsi2pk.set(f"CONN#{connection_id}#PRV#{provider_id}"),
            Mapping.gsi2sk.set("MAP"),
            Mapping.mapping_id.set(mapping_id),
            Mapping.connection_id.set(connection_id),
            Mapping.crm_id.set(crm_id),
            Mapping.provider_id.set(provider_id),
            Mapping.base.set(json.dumps(base.to_dict(), sort_keys=True)),
            Mapping.crm_version.set(crm_version),
            Mapping.provider_version.set(provider_version),
            Mapping.detached.set(detached),
            Mapping.holds.set(
                json.dumps({k: c.to_dict() for k, c in holds.items()}, sort_keys=True)
            )
            if holds
            else Mapping.holds.remove(),
            Mapping.refusals.set(refusals),
            Mapping.created_at.set(Mapping.created_at | stamp),
            Mapping.updated_at.set(stamp),
        ]
    )
    return mapping


def delete_mapping(connection_id: str, mapping_id: str) -> None:
    Mapping(conn_pk(connection_id), f"MAP#{mapping_id}").delete()


def iter_mappings(connection_id: str, page_size: int = 500) -> Iterator[Mapping]:
    """Every mapping of a connection, read a page at a time."""
    pk = conn_pk(connection_id)
    yield from Mapping.query(pk, Mapping.sk.startswith("MAP#"), page_size=page_size)


def count_mappings(connection_id: str) -> int:
    """Linked pairs: mappings not detached (a detached pair syncs nothing)."""
    pk = conn_pk(connection_id)
    linked = Mapping.detached.does_not_exist() | (Mapping.detached == "")
    return Mapping.count(pk, Mapping.sk.startswith("MAP#"), filter_condition=linked)


def delete_mappings(connection_id: str) -> None:
    """Delete every mapping of a connection (batch writes)."""
    with Mapping.batch_write() as mappings:
        for mapping in Mapping.query(conn_pk(connection_id), Mapping.sk.startswith("MAP#")):
            mappings.delete(mapping)
