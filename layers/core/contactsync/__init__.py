"""contactsync: the shared core of the contact-sync service."""
