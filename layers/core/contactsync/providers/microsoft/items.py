"""An Outlook contact item as the side reports it: a ``RemoteContact``, in scope when it is in
the sync folder, carrying our mapping id.

Our mapping id lives in a named single-value extended property (a MAPI named property in our
own property set), so it survives edits in Outlook and can be searched with $filter.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from contactsync.providers.base import RemoteContact
from contactsync.providers.microsoft.mapping import from_graph

TAG_PROPERTY_ID = "String {3f6c2a8e-5b1d-4c7a-9e2f-8d4b6a1c0e57} Name contactsync.mapping"
TAG_EXPAND = f"singleValueExtendedProperties($filter=id eq '{TAG_PROPERTY_ID}')"
TAG_EXPAND_QUERY = "$expand=" + quote(TAG_EXPAND)  # for URLs we build ourselves ($batch)
MOVED_OUT = "moved out of the folder"


def remote_of(item: dict[str, Any], folder: str) -> RemoteContact:
    """A contact item as a ``RemoteContact``: in scope when its folder is ``folder``."""
    parent = item.get("parentFolderId")
    in_scope = parent is None or parent == folder
    tag = ""
    for prop in item.get("singleValueExtendedProperties") or []:
        if str(prop.get("id", "")).lower() == TAG_PROPERTY_ID.lower():
            tag = str(prop.get("value", ""))
    return RemoteContact(
        id=str(item["id"]),
        contact=from_graph(item),
        version=str(item.get("@odata.etag") or item.get("changeKey") or ""),
        modified_at=str(item.get("lastModifiedDateTime") or ""),
        in_scope=in_scope,
        scope_reason="" if in_scope else MOVED_OUT,
        tag=tag,
    )


def with_tag(remote: RemoteContact, tag: str) -> RemoteContact:
    return RemoteContact(remote.id, remote.contact, remote.version, remote.modified_at,
                         remote.in_scope, remote.scope_reason, tag)  # fmt: skip
