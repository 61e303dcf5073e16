"""Audit items: the activity log of a connection (``AuditEntryItem``), its mentions, and
AuditIndex, which finds the entries about one contact.

``now`` parameters take an aware ``datetime``; when omitted the current UTC time is used.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from contactsync.store.keys import conn_pk
from contactsync.store.models import AuditEntryItem, AuditMention, iso, utcnow

AUDIT_RETENTION_DAYS = 90  # the default of the ACTIVITY_RETENTION_DAYS setting
_audit_retention = timedelta(days=AUDIT_RETENTION_DAYS)
_audit_seq = itertools.count()


class InvalidPageCursor(ValueError):
    """A paging cursor that this module did not hand out."""


def keep_activity_for(days: int) -> None:
    """How long the activity log keeps an entry (the table's TTL then deletes it)."""
    global _audit_retention  # noqa: PLW0603 - one setting, set once per cold start
    _audit_retention = timedelta(days=days)


def about_contact(connection_id: str, side: str, contact_id: str) -> str:
    """The AuditIndex key of the entries about one contact (a CRM person, a provider contact)."""
    return f"{conn_pk(connection_id)}#{'CRM' if side == 'crm' else 'PRV'}#{contact_id}"


def about_duplicates(connection_id: str) -> str:
    """The AuditIndex key of a connection's duplicate findings."""
    return f"{conn_pk(connection_id)}#DUPLICATES"


def _mention_pk(connection_id: str) -> str:
    return f"{conn_pk(connection_id)}#MENTION"


def _abouts(
    connection_id: str, kind: str, crm_id: str | None, provider_id: str | None, details: Any
) -> list[str]:
    """Where an entry is found in AuditIndex, its own key first.

    A pair's entries are all under its CRM person (whichever id support asks by, the mapping
    leads to it), an entry naming no CRM person under its provider contact, a duplicate
    finding under the connection's findings. Contacts its details list (a finding's persons
    and contacts, a merged person) are mentioned too: one more index item each.
    """
    abouts = [about_duplicates(connection_id)] if kind == "duplicate" else []
    if crm_id:
        abouts.append(about_contact(connection_id, "crm", crm_id))
    elif provider_id:
        abouts.append(about_contact(connection_id, "provider", provider_id))
    listed = details if isinstance(details, dict) else {}
    for side, key in (("crm", "crm_ids"), ("provider", "provider_ids")):
        ids = listed.get(key)
        for contact_id in ids if isinstance(ids, list) else []:
            abouts.append(about_contact(connection_id, side, str(contact_id)))
    if listed.get("merged"):
        abouts.append(about_contact(connection_id, "crm", str(listed["merged"])))
    return list(dict.fromkeys(abouts))


def audit_items(
    connection_id: str,
    kind: str,
    message: str,
    *,
    side: str | None = None,
    crm_id: str | None = None,
    provider_id: str | None = None,
    mapping_id: str | None = None,
    before: Any = None,
    after: Any = None,
    details: Any = None,
    now: datetime | None = None,
) -> tuple[AuditEntryItem, list[AuditMention]]:
    """An audit entry and its mentions, not yet written (see ``add_audit``)."""
    moment = now or utcnow()
    at = iso(moment)
    expires = moment + _audit_retention
    abouts = _abouts(connection_id, kind, crm_id, provider_id, details)
    entry = AuditEntryItem(
        conn_pk(connection_id),
        f"LOG#{at}#{next(_audit_seq) % 1_000_000:06d}",
        connection_id=connection_id,
        at=at,
        kind=kind,
        side=side,
        crm_id=crm_id,
        provider_id=provider_id,
        mapping_id=mapping_id,
        message=message,
        before=before,
        after=after,
        details=details,
        expires_at=expires,
        about=abouts[0] if abouts else None,
    )
    mentions = [
        AuditMention(
            _mention_pk(connection_id),
            f"{entry.sk}#{n}",
            about=about,
            kind=kind,
            at=at,
            message=message,
            expires_at=expires,
        )
        for n, about in enumerate(abouts[1:], start=1)
    ]
    return entry, mentions


def add_audit(
    connection_id: str,
    kind: str,
    message: str,
    *,
    side: str | None = None,
    crm_id: str | None = None,
    provider_id: str | None = None,
    mapping_id: str | None = None,
    before: Any = None,
    after: Any = None,
    details: Any = None,
    now: datetime | None = None,
) -> AuditEntryItem:
    """Append an audit entry (kept for the activity retention, 90 days unless configured).
    ``before``/``after``/``details`` are JSON-ready."""
    entry, mentions = audit_items(
        connection_id,
        kind,
        message,
        side=side,
        crm_id=crm_id,
        provider_id=provider_id,
        mapping_id=mapping_id,
        before=before,
        after=after,
        details=details,
        now=now,
    )
    entry.save()
    if mentions:
        with AuditMention.batch_write() as batch:
            for mention in mentions:
                batch.save(mention)
    return entry


def audit_about(about: str, limit: int = 1000) -> list[AuditEntryItem]:
    """What AuditIndex holds under ``about`` (see ``about_contact``), newest first, at most
    ``limit``: one Query. Rows carry only kind, at, side, message and details; a mention's row
    stands for its entry (``audit_entries`` reads the whole entries)."""
    return list(AuditEntryItem.by_about.query(about, scan_index_forward=False, limit=limit))


def audit_entries(rows: Sequence[AuditEntryItem]) -> list[AuditEntryItem]:
    """The whole entries behind AuditIndex rows, in the rows' order (one BatchGetItem per 100
    keys). An entry gone meanwhile (expired, erased) is left out."""
    keys = list(dict.fromkeys(_entry_key(row) for row in rows))
    found = {(e.pk, e.sk): e for e in AuditEntryItem.batch_get(keys)} if keys else {}
    return [found[key] for key in keys if key in found]


def _entry_key(row: AuditEntryItem) -> tuple[str, str]:
    """The key of the entry an AuditIndex row stands for (itself, or the one it mentions)."""
    if row.pk.endswith("#MENTION"):
        return row.pk.removesuffix("#MENTION"), row.sk.rsplit("#", 1)[0]
    return row.pk, row.sk


def _encode_page_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_page_cursor(cursor: str | None, pk: str) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError) as error:
        raise InvalidPageCursor("not a page cursor") from error
    if not isinstance(key, dict) or key.get("PK") != {"S": pk}:
        raise InvalidPageCursor("page cursor of another listing")
    return key


def list_audit(
    connection_id: str, limit: int = 50, cursor: str | None = None
) -> tuple[list[AuditEntryItem], str | None]:
    """A page of the audit log, newest first, and the cursor of the next page (None at the end)."""
    pk = conn_pk(connection_id)
    results = AuditEntryItem.query(
        pk,
        AuditEntryItem.sk.startswith("LOG#"),
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=_decode_page_cursor(cursor, pk),
    )
    entries = list(results)
    return entries, _encode_page_cursor(results.last_evaluated_key)


def list_audit_page(
    connection_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    kind: str | None = None,
    max_read: int = 1000,
) -> tuple[list[AuditEntryItem], str | None]:
    """A page of the audit log, newest first, optionally of one ``kind``, and the next cursor.

    One key-condition query on the connection's partition. With a ``kind`` at most ``max_read``
    entries are looked at per call, so a rare kind may give a short (even empty) page with a
    cursor to go on from; the cursor is None only at the end of the log.
    """
    pk = conn_pk(connection_id)
    results = AuditEntryItem.query(
        pk,
        AuditEntryItem.sk.startswith("LOG#"),
        scan_index_forward=False,
        limit=max(limit, max_read) if kind else limit,
        page_size=min(max(limit, 50), 200) if kind else limit,
        last_evaluated_key=_decode_page_cursor(cursor, pk),
    )
    entries: list[AuditEntryItem] = []
    for entry in results:
        if kind is None or entry.kind == kind:
            entries.append(entry)
            if len(entries) == limit:
                break
    # PynamoDB resumes from the last entry handed out when it stopped inside a page.
    return entries, _encode_page_cursor(results.last_evaluated_key)


_AUDIT_ENTRY_ID = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z-\d{6}$")
AUDIT_ENTRY_ID_PATTERN = _AUDIT_ENTRY_ID.pattern


def audit_entry_id(entry: AuditEntryItem) -> str:
    """An audit entry's id in URLs: its sort key without ``LOG#``, ``#`` written as ``-``."""
    return entry.sk.removeprefix("LOG#").replace("#", "-")


def get_audit_entry(connection_id: str, entry_id: str) -> AuditEntryItem | None:
    """The audit entry with this id (see ``audit_entry_id``), or None."""
    if not _AUDIT_ENTRY_ID.match(entry_id):
        return None
    sk = f"LOG#{entry_id[:-7]}#{entry_id[-6:]}"
    try:
        return AuditEntryItem.get(conn_pk(connection_id), sk, consistent_read=True)
    except AuditEntryItem.DoesNotExist:
        return None


def delete_audit(connection_id: str) -> None:
    """Delete a connection's audit log, its mentions included (batch writes)."""
    pk = conn_pk(connection_id)
    with AuditEntryItem.batch_write() as audit:
        for entry in AuditEntryItem.query(pk, AuditEntryItem.sk.startswith("LOG#")):
            audit.delete(entry)
    with AuditMention.batch_write() as mentions:
        for mention in AuditMention.query(_mention_pk(connection_id)):
            mentions.delete(mention)
