"""The CRM: Pipedrive persons owned by one user.

``adapter`` is the ``ContactSide`` the pass uses (updated-since listings, one write a request,
webhooks, the tag field, organizations), ``mapping`` turns persons to and from the canonical
contact, ``errors`` says what the API's answers mean and how Pipedrive is called (the
transport's rules).
"""

from contactsync.providers.pipedrive.adapter import PipedrivePersons

__all__ = ["PipedrivePersons"]
