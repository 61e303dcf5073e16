"""The tenant rule every admin service goes through."""

from __future__ import annotations

import pytest
from contactsync.admin.access import Caller, is_own, reaches, users_seen

USER = Caller(user_id="u1", company_id="c1")
ADMIN = Caller(user_id="u9", company_id="c1", is_admin=True)


@pytest.mark.parametrize(
    ("caller", "company_id", "user_id", "expected"),
    [
        (USER, "c1", "u1", True),  # their own
        (USER, "c1", "u2", False),  # a colleague's
        (USER, "c1", None, False),  # the whole company
        (USER, "c2", "u1", False),  # the same user id in another company
        (ADMIN, "c1", "u2", True),  # an admin: anyone of the company
        (ADMIN, "c1", None, True),  # and the whole company
        (ADMIN, "c2", "u2", False),  # but nobody across companies
        (ADMIN, "c2", None, False),
    ],
)
def test_a_user_reaches_their_own_an_admin_the_company_nobody_another_company(
    caller: Caller, company_id: str, user_id: str | None, expected: bool
) -> None:
    assert reaches(caller, company_id, user_id) is expected


def test_only_the_user_themself_owns_what_they_started_admin_or_not() -> None:
    assert is_own(USER, "c1", "u1")
    assert not is_own(ADMIN, "c1", "u1")


def test_a_listing_shows_a_user_their_own_and_an_admin_everyone() -> None:
    assert users_seen(USER) == "u1"
    assert users_seen(ADMIN) is None
