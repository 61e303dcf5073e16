"""Key claims: a connection about to make a CRM person with a normalised contact key holds the
key, so that the user's other connections do not make the same person meanwhile."""

from __future__ import annotations

from datetime import datetime, timedelta

from pynamodb.exceptions import PynamoDBException

from contactsync.store.models import KeyClaim, conditional_failure, iso, utcnow


def claim_key(
    company_id: str,
    user_id: str,
    key: str,
    *,
    owner: str,
    seconds: float,
    now: datetime | None = None,
) -> bool:
    """Claim a normalised contact key for ``owner`` (a connection) among the user's connections,
    for ``seconds``: a conditional put that succeeds when the key is free, lapsed, or already
    ``owner``'s. False when another connection holds it."""
    moment = now or utcnow()
    claim = KeyClaim(
        f"CLAIM#{company_id}#{user_id}",
        f"KEY#{key}",
        owner=owner,
        until=iso(moment + timedelta(seconds=seconds)),
        expires_at=moment + timedelta(seconds=seconds) + timedelta(hours=1),
    )
    free = KeyClaim.pk.does_not_exist() | (KeyClaim.until <= iso(moment))
    try:
        claim.save(condition=free | (KeyClaim.owner == owner))
    except PynamoDBException as error:
        if conditional_failure(error):
            return False
        raise
    return True


def release_key(company_id: str, user_id: str, key: str, *, owner: str) -> None:
    """Let go of one key ``owner`` claimed (a conditional delete: another's claim stays)."""
    try:
        KeyClaim(f"CLAIM#{company_id}#{user_id}", f"KEY#{key}").delete(
            condition=KeyClaim.owner == owner
        )
    except PynamoDBException as error:
        if not conditional_failure(error):
            raise


def release_claims(company_id: str, user_id: str, owner: str) -> None:
    """Forget the key claims ``owner`` (a connection) holds: they name contacts' keys."""
    claims = KeyClaim.query(f"CLAIM#{company_id}#{user_id}", KeyClaim.sk.startswith("KEY#"))
    with KeyClaim.batch_write() as batch:
        for claim in claims:
            if claim.owner == owner:
                batch.delete(claim)
