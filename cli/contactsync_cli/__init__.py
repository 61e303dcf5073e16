"""``contactsync``: the admins' command-line client, thin over the admin HTTP API."""

from contactsync_cli.render import render_status_table

__all__ = ["render_status_table"]
