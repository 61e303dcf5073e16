"""The keys of the table's items that more than one kind of item builds on, and the rule for
ids from outside that become parts of keys (see ``contactsync.store.models`` for every key).
"""

from __future__ import annotations

import re


def conn_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def pending_pk(connection_id: str) -> str:
    """The partition of a connection's pending ops: apart from its mappings, so reading the few
    pending ops never walks a partition of 100,000 mappings."""
    return f"CONN#{connection_id}#OPS"


# Ids from outside (a token's user and company, a provider's subscription id) become parts of keys
# joined with "#": one that holds a "#" could reach another owner's items (user "a#b" under the
# prefix "USER#a#"). Visible ASCII without "#", as long as a key part may be.
OWNER_ID_PATTERN = r"^[\x21\x22\x24-\x7e]{1,128}$"
_OWNER_ID = re.compile(OWNER_ID_PATTERN)


def owner_id(value: str, what: str = "id") -> str:
    """``value`` if it can be a part of a key; ValueError (naming ``what``) otherwise."""
    if not _OWNER_ID.fullmatch(value):
        raise ValueError(f"{what} must be 1 to 128 visible ASCII characters other than '#'")
    return value


def user_pk(company_id: str, user_id: str) -> str:
    return f"USER#{owner_id(company_id, 'company id')}#{owner_id(user_id, 'user id')}"
