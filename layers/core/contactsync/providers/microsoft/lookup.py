"""What a look-up asks Graph for: the sync folder's contacts with one of the emails or display
names of the contacts a pass would copy, one ``$filter`` GET each (sub-requests of a ``$batch``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from contactsync.contacts.model import Contact
from contactsync.providers.microsoft.items import TAG_EXPAND_QUERY


def lookup_requests(contacts: Sequence[Contact], folder_id: str) -> list[dict[str, Any]]:
    """One GET per distinct email and display name, numbered for the batch."""
    filters = list(
        dict.fromkeys(
            [
                f"emailAddresses/any(a:a/address eq '{_quoted(e.value.strip())}')"
                for contact in contacts
                for e in contact.emails
                if e.value.strip()
            ]
            + [
                f"displayName eq '{_quoted(contact.full_name.strip())}'"
                for contact in contacts
                if contact.full_name.strip()
            ]
        )
    )
    folder = f"/me/contactFolders/{folder_id}/contacts"
    requests = [
        {
            "id": str(i),
            "method": "GET",
            "url": f"{folder}?{urlencode({'$filter': f, '$top': '50'})}&{TAG_EXPAND_QUERY}",
        }
        for i, f in enumerate(filters)
    ]
    return requests


def _quoted(text: str) -> str:
    """A string for an OData literal: single quotes doubled."""
    return text.replace("'", "''")
