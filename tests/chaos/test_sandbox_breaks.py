"""The broken answers the chaos run switches on: a dropped connection, a truncated body."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from sandbox.graph.running import running_graph_sandbox
from sandbox.pipedrive import start_pipedrive_sandbox


def test_graph_resets_then_truncates_after_the_write(tmp_path: Path) -> None:
    with running_graph_sandbox(tmp_path) as graph:
        sb = graph.sandbox
        user = sb.add_user("ada@x.example", "Ada")
        folder = sb.add_folder(user, "CRM contacts")
        auth = {"authorization": f"Bearer {sb.access_token_for(user)}"}
        url = f"{graph.graph_url}/me/contactFolders/{folder}/contacts"
        # Given one reset and one truncated answer are switched on
        sb.inject_breaks("reset")
        sb.inject_breaks("truncated")
        # Then the first request dies mid-answer and writes nothing
        with pytest.raises(httpx.TransportError):
            httpx.post(url, json={"givenName": "Ada"}, headers=auth)
        assert not sb.folder_contacts(user, folder)
        # And the second one writes, but its answer cannot be read
        answer = httpx.post(url, json={"givenName": "Ada"}, headers=auth)
        with pytest.raises(json.JSONDecodeError):
            answer.json()
        assert len(sb.folder_contacts(user, folder)) == 1
        # And the next one is whole again
        assert httpx.get(url, headers=auth).json()["value"]


def test_pipedrive_resets_then_truncates_after_the_write() -> None:
    running = start_pipedrive_sandbox()
    try:
        sb = running.sandbox
        company = sb.add_company("Acme")
        user = sb.add_user(company, "Ada", "ada@x.example")
        auth = {"authorization": f"Bearer {sb.issue_token(user)}"}
        url = f"{running.url}/api/v2/persons"
        sb.inject_break("reset", path_prefix="/api/v2/persons")
        sb.inject_break("truncated")
        with pytest.raises(httpx.TransportError):
            httpx.post(url, json={"name": "Bo"}, headers=auth)
        answer = httpx.post(url, json={"name": "Bo"}, headers=auth)
        with pytest.raises(json.JSONDecodeError):
            answer.json()
        assert [p.name for p in sb.persons_of(user)] == ["Bo"]
        assert httpx.get(url, headers=auth).json()["success"] is True
    finally:
        running.stop()
