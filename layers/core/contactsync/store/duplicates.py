"""Possible duplicates a full listing found: review holds (contacts left unlinked until a person
resolves them) and duplicate clusters (CRM persons that look like one person)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from contactsync.store.keys import conn_pk
from contactsync.store.models import DuplicateCluster, ReviewHold, iso, utcnow


def review_holds(connection_id: str, side: str, contact_ids: Sequence[str]) -> set[str]:
    """Which of ``contact_ids`` are held for review (a batch get by key, 100 at a time)."""
    keys = [(conn_pk(connection_id), f"HOLD#{side}#{c}") for c in dict.fromkeys(contact_ids)]
    return {hold.contact_id for hold in ReviewHold.batch_get(keys)}


def replace_review_holds(
    connection_id: str, holds: Sequence[tuple[str, str, str]], now: datetime | None = None
) -> None:
    """The holds a full listing found, (side, contact id, reason), replacing the earlier ones."""
    pk = conn_pk(connection_id)
    with ReviewHold.batch_write() as batch:
        for old in ReviewHold.query(pk, ReviewHold.sk.startswith("HOLD#")):
            batch.delete(old)
    stamp = iso(now or utcnow())
    with ReviewHold.batch_write() as batch:
        for side, contact_id, reason in holds:
            batch.save(
                ReviewHold(
                    pk,
                    f"HOLD#{side}#{contact_id}",
                    side=side,
                    contact_id=contact_id,
                    reason=reason,
                    created_at=stamp,
                )
            )


def _clusters_pk(connection_id: str) -> str:
    return f"{conn_pk(connection_id)}#CLUSTERS"


def replace_duplicate_clusters(
    connection_id: str,
    clusters: Sequence[tuple[Sequence[str], Sequence[str]]],
    now: datetime | None = None,
) -> None:
    """The clusters a full listing of the CRM found, (crm ids, shared keys), replacing the
    earlier ones; a cluster found again unchanged is not written again."""
    pk = _clusters_pk(connection_id)
    wanted = {f"CLUSTER#{ids[0]}": (list(ids), list(keys)) for ids, keys in clusters if ids}
    stamp = iso(now or utcnow())
    with DuplicateCluster.batch_write() as batch:
        for old in DuplicateCluster.query(pk, DuplicateCluster.sk.startswith("CLUSTER#")):
            if wanted.get(old.sk) == (list(old.crm_ids), list(old.keys)):
                del wanted[old.sk]
            elif old.sk not in wanted:
                batch.delete(old)
        for sk, (ids, keys) in wanted.items():
            batch.save(DuplicateCluster(pk, sk, crm_ids=ids, keys=keys, found_at=stamp))


def list_duplicate_clusters(connection_id: str) -> list[DuplicateCluster]:
    """The clusters the last full listing of the CRM found (one Query, by cluster)."""
    pk = _clusters_pk(connection_id)
    return list(DuplicateCluster.query(pk, DuplicateCluster.sk.startswith("CLUSTER#")))
