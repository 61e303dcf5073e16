"""Where a CardDAV connection's contacts live: an address book, and optionally a group in it.

The folder id is the address book's URL, with ``#card:<path>`` for a group kept as a group card
(iCloud, Fastmail: ``X-ADDRESSBOOKSERVER-KIND:group`` listing its members' UIDs) or
``#category:<name>`` for a group kept as ``CATEGORIES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit


@dataclass(frozen=True)
class Scope:
    """Where a connection's contacts live: an address book, and optionally a group in it."""

    book_url: str
    group: str = ""  # "card:<path>" or "category:<name>"

    @classmethod
    def parse(cls, folder_id: str) -> Scope:
        book, _, group = folder_id.partition("#")
        return cls(book if book.endswith("/") else book + "/", unquote(group))

    @property
    def folder_id(self) -> str:
        return self.book_url + (f"#{quote(self.group, safe=':/')}" if self.group else "")

    @property
    def book_path(self) -> str:
        return unquote(urlsplit(self.book_url).path)
