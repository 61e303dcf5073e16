"""The committed OpenAPI document is the one the code generates (no drift)."""

from __future__ import annotations

import json

from functions.admin_api import openapi


def test_the_committed_document_matches_the_code() -> None:
    # Given the document committed next to the handler
    committed = openapi.DOCUMENT.read_text(encoding="utf-8")
    # When the routes and models generate it again
    generated = openapi.render()
    # Then they are the same (run `python -m functions.admin_api.openapi` after a route change)
    assert committed == generated


def test_the_document_describes_every_support_route() -> None:
    paths = json.loads(openapi.render())["paths"]
    for path in (
        "/connections/{connection_id}/preview",
        "/connections/{connection_id}/explain",
        "/connections/{connection_id}/duplicates",
        "/connections/{connection_id}/duplicates/merge",
        "/connections/{connection_id}/activity",
        "/connections/{connection_id}/activity/{entry_id}/undo",
        "/connections/{connection_id}/confirm",
        "/connections/{connection_id}/discard",
        "/connections/{connection_id}/reconnect",
        "/connections/{connection_id}/resync",
        "/status",
    ):
        assert path in paths, path
