"""Who may act on what: the one tenant rule of the admin services.

A user acts on their own connections; a company admin on the company's; nobody across
companies. Another company's connection, or another user's for a non-admin, is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass

from contactsync.admin.errors import ConflictError, NotFoundError
from contactsync.store.connections import get_connection
from contactsync.store.credentials import credentials_of
from contactsync.store.keys import owner_id
from contactsync.store.models import Connection


@dataclass(frozen=True)
class Caller:
    """Who is asking, as the JWT authorizer vouched for them."""

    user_id: str
    company_id: str
    is_admin: bool = False


def caller_of(user_id: str, company_id: str, *, is_admin: bool) -> Caller:
    """The caller a token names; ValueError, saying what is wrong, when it names no user or
    company, or one no owner key can be made of."""
    if not user_id or not company_id:
        raise ValueError("the token names no user or company")
    owner_id(user_id, "the token's sub")
    owner_id(company_id, "the token's company_id")
    return Caller(user_id=user_id, company_id=company_id, is_admin=is_admin)


def in_company(caller: Caller, company_id: str) -> bool:
    return company_id == caller.company_id


def reaches(caller: Caller, company_id: str, user_id: str | None) -> bool:
    """The tenant rule: whether the caller may act on what ``user_id`` of ``company_id`` holds
    (``None``: every user of the company, which only its admins reach)."""
    return in_company(caller, company_id) and (caller.is_admin or user_id == caller.user_id)


def is_own(caller: Caller, company_id: str, user_id: str) -> bool:
    """Whether it is the caller's very own, admin or not (a sign-in only its starter finishes)."""
    return (company_id, user_id) == (caller.company_id, caller.user_id)


def users_seen(caller: Caller) -> str | None:
    """Whose connections a listing shows: the caller's own, or (an admin's) everyone's: None."""
    return None if caller.is_admin else caller.user_id


def connection_of(caller: Caller, connection_id: str) -> Connection:
    """The caller's connection; ``NotFoundError`` for anything the tenant rule keeps from them."""
    conn = get_connection(connection_id)
    if conn is None or not reaches(caller, conn.company_id, conn.user_id):
        raise NotFoundError(f"no connection {connection_id!r}")
    return conn


def signed_in_connection(caller: Caller, connection_id: str) -> Connection:
    """The caller's connection, once its provider account is signed in."""
    conn = connection_of(caller, connection_id)
    if credentials_of(conn) is None:
        raise ConflictError("finish signing in to the provider first")
    return conn
