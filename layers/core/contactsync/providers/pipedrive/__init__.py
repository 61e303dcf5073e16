"""The CRM: Pipedrive persons owned by one user.

``adapter`` is the ``ContactSide`` the pass uses (updated-since listings, one write a request,
webhooks); ``api`` sends requests paced below the burst limit; ``position`` is where a listing
stands; ``lookup`` what a look-up searches for; ``writes`` how persons are written one by one;
``organizations`` and ``tag_field`` the company's organizations and our id field; ``mapping``
turns persons to and from the canonical contact; ``errors`` says what the API's answers mean and
how Pipedrive is called (the transport's rules).
"""

from contactsync.providers.pipedrive.adapter import PipedrivePersons

__all__ = ["PipedrivePersons"]
