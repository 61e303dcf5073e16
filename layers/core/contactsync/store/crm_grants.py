"""CRM grants (a user's sealed CRM tokens) and CRM sign-ins in flight."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pynamodb.exceptions import PynamoDBException

from contactsync.store.keys import owner_id, user_pk
from contactsync.store.models import CrmAuthorization, CrmGrant, conditional_failure, iso, utcnow

CRM_AUTHORIZATION_LIFETIME = timedelta(hours=1)


def put_crm_grant(
    company_id: str,
    user_id: str,
    tokens: bytes,
    *,
    replacing: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Store a user's CRM tokens; ``tokens`` must already be sealed by the vault.

    With ``replacing`` (the ``updated_at`` of the grant they were refreshed from), only if
    nobody stored newer ones meanwhile: False then, and nothing is written. Two connections of
    a user share one grant, and a rotated refresh token must never be overwritten by a stale one.
    """
    grant = CrmGrant(
        user_pk(company_id, user_id),
        "CRM",
        company_id=company_id,
        user_id=user_id,
        tokens=tokens,
        updated_at=iso(now or utcnow()),
        gsi1pk=f"COMPANY#{company_id}",
        gsi1sk=f"CRM#USER#{user_id}",
    )
    try:
        grant.save(condition=CrmGrant.updated_at == replacing if replacing else None)
    except PynamoDBException as error:
        if replacing and conditional_failure(error):
            return False
        raise
    return True


def crm_grant_users(company_id: str) -> list[str]:
    """The users of a company who connected their CRM account (GSI1)."""
    key = f"COMPANY#{owner_id(company_id, 'company id')}"
    grants = CrmGrant.by_company.query(key, CrmGrant.gsi1sk.startswith("CRM#USER#"))
    return [(grant.gsi1sk or "").removeprefix("CRM#USER#") for grant in grants]  # keys only


def get_crm_grant(company_id: str, user_id: str) -> CrmGrant | None:
    try:
        return CrmGrant.get(user_pk(company_id, user_id), "CRM", consistent_read=True)
    except CrmGrant.DoesNotExist:
        return None


def delete_crm_grant(company_id: str, user_id: str) -> None:
    CrmGrant(user_pk(company_id, user_id), "CRM").delete()


def _crm_sign_in_pk(state: str) -> str:
    # The state travels in URLs; the table keeps only its hash.
    return f"CRMAUTH#{hashlib.sha256(state.encode()).hexdigest()}"


def put_crm_sign_in(company_id: str, user_id: str, state: str, sealed_flow: bytes) -> None:
    """Keep a CRM sign-in in flight (it expires in an hour), found again by its state alone."""
    moment = utcnow()
    CrmAuthorization(
        _crm_sign_in_pk(state),
        "CRM_AUTH",
        company_id=owner_id(company_id, "company id"),
        user_id=owner_id(user_id, "user id"),
        oauth_state=sealed_flow,
        created_at=iso(moment),
        expires_at=moment + CRM_AUTHORIZATION_LIFETIME,
    ).save()


def get_crm_sign_in(state: str) -> CrmAuthorization | None:
    """The CRM sign-in this state started, unless there is none or it expired."""
    try:
        item = CrmAuthorization.get(_crm_sign_in_pk(state), "CRM_AUTH", consistent_read=True)
    except CrmAuthorization.DoesNotExist:
        return None
    if item.expires_at <= utcnow():  # TTL deletion is lazy: check the time ourselves
        return None
    return item


def delete_crm_sign_in(state: str) -> None:
    CrmAuthorization(_crm_sign_in_pk(state), "CRM_AUTH").delete()
