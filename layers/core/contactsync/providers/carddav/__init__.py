"""CardDAV (RFC 6352): iCloud, Fastmail, Nextcloud and any CardDAV address book.

``dav`` speaks the protocol, ``errors`` says what its answers mean, ``vcard`` reads cards as
the canonical contact and ``vcard_writing`` writes them, ``discovery`` finds a user's address
books, ``scope`` is the address book (and group) a connection syncs, ``book`` reads its cards,
``lookup`` says what a look-up asks for, and ``side`` is the ``ContactSide`` the pass uses.
"""

from contactsync.providers.carddav.dav import REAUTH, DavClient
from contactsync.providers.carddav.discovery import Account, address_books, discover, server_for
from contactsync.providers.carddav.scope import Scope
from contactsync.providers.carddav.side import CardDavContacts

__all__ = [
    "REAUTH",
    "Account",
    "CardDavContacts",
    "DavClient",
    "Scope",
    "address_books",
    "discover",
    "server_for",
]
