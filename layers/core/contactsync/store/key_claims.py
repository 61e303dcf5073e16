"""Key claims: a connection about to make a CRM person with a normalised contact key holds the
key, so that the user's other connections do not make the same person meanwhile. Once the person
is made the claim names it until it lapses: another connection that reads the CRM's changes too
early or misses them (a page that came back short) finds the person by the claim; and a person
deleted since frees the claim for whoever has to make it again."""

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
    replacing: str = "",
) -> bool:
    """Claim a normalised contact key for ``owner`` (a connection) among the user's connections,
    for ``seconds``: a conditional put that succeeds when the key is free, lapsed, already
    ``owner``'s, or names the person ``replacing`` (made, and gone since). False when another
    connection holds it."""
    moment = now or utcnow()
    claim = KeyClaim(
        f"CLAIM#{company_id}#{user_id}",
        f"KEY#{key}",
        owner=owner,
        until=iso(moment + timedelta(seconds=seconds)),
        expires_at=moment + timedelta(seconds=seconds) + timedelta(hours=1),
    )
    free = KeyClaim.pk.does_not_exist() | (KeyClaim.until <= iso(moment))
    ours = KeyClaim.owner == owner
    if replacing:
        ours = ours | (KeyClaim.made == replacing)
    try:
        claim.save(condition=free | ours)
    except PynamoDBException as error:
        if conditional_failure(error):
            return False
        raise
    return True


def settle_key(company_id: str, user_id: str, key: str, *, owner: str, made: str) -> None:
    """The person ``owner`` claimed ``key`` for is made: the claim names it until it lapses (a
    conditional update: another's claim stays as it is)."""
    try:
        KeyClaim(f"CLAIM#{company_id}#{user_id}", f"KEY#{key}").update(
            actions=[KeyClaim.made.set(made)], condition=KeyClaim.owner == owner
        )
    except PynamoDBException as error:
        if not conditional_failure(error):
            raise


def claimed_person(company_id: str, user_id: str, key: str) -> str:
    """The CRM person a claim on ``key`` names ("" while its connection is still making it, or
    when there is no claim)."""
    try:
        claim = KeyClaim.get(f"CLAIM#{company_id}#{user_id}", f"KEY#{key}", consistent_read=True)
    except KeyClaim.DoesNotExist:
        return ""
    return claim.made or ""


def release_claims(company_id: str, user_id: str, owner: str) -> None:
    """Forget the key claims ``owner`` (a connection) holds: they name contacts' keys."""
    claims = KeyClaim.query(f"CLAIM#{company_id}#{user_id}", KeyClaim.sk.startswith("KEY#"))
    with KeyClaim.batch_write() as batch:
        for claim in claims:
            if claim.owner == owner:
                batch.delete(claim)
