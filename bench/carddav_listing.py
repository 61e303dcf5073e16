"""Our full listing of a CardDAV address book, as its own process for the carddav table: every
card listed (``sync-collection``), fetched (``addressbook-multiget``) and parsed into the canonical
contact. It imports only what the CardDAV side needs, as a reconciler cold start would.

python -m bench.carddav_listing BOOK_URL USER   (password in CARDDAV_PASSWORD)
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import httpx
from contactsync.providers.carddav import CardDavContacts, DavClient

PASSWORD_VARIABLE = "CARDDAV_PASSWORD"  # noqa: S105 - the variable's name


def list_book(url: str, user: str, password: str) -> dict[str, Any]:
    started, cpu = time.monotonic(), time.process_time()
    with httpx.Client(timeout=60) as http:
        side = CardDavContacts(dav=DavClient(http, lambda: (user, password)), folder_id=url)
        page = side.read(None)
        count = len(page.contacts)
        while not page.complete:
            page = side.read(page.position)
            count += len(page.contacts)
    return {
        "seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu,
        "contacts": count,
    }


if __name__ == "__main__":
    print(json.dumps(list_book(sys.argv[1], sys.argv[2], os.environ[PASSWORD_VARIABLE])))
