"""Microsoft 365: one Outlook contact folder through Microsoft Graph.

``adapter`` is the ``ContactSide`` the pass uses (delta reads, ``$batch`` writes, folders,
subscriptions), ``graph`` sends requests and ``$batch``es, ``mapping`` turns Graph contacts to
and from the canonical contact, ``errors`` says what Graph's answers mean and how Graph is called
(the transport's rules).
"""

from contactsync.providers.microsoft.adapter import MicrosoftContacts

__all__ = ["MicrosoftContacts"]
