"""Google: one contact group of the user's Google contacts, through the People API.

``adapter`` is the ``ContactSide`` the pass uses (sync-token listings, batch writes, groups),
``people_api`` sends its requests, ``mapping`` turns persons to and from the canonical contact,
``errors`` says what the API's answers (and a failed batch's) mean and how Google is called (the
transport's rules).
"""

from contactsync.providers.google.adapter import GoogleContacts

__all__ = ["GoogleContacts"]
