"""Finding secrets and personal data where they must not be: log text and stored items.

A ``Watchlist`` holds what the running stack knows is secret (every token the sandboxes issued,
client secrets, webhook secrets, the admin JWTs) and what is personal (every e-mail address and
phone number in both sandboxes). The finders return one line per leak, so a test can print them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from local.stack import LocalStack

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# A token-named field with a value that is not masked
TOKEN_KEYS = re.compile(
    r"(?i)[\"']?(access_token|refresh_token|client_secret)[\"']?\s*[:=]\s*[\"']?(?!\*\*\*)[^\s\"',}&]{8,}"
)
PHONE_RUN = re.compile(r"\+?\(?\d(?:[\s().-]{0,2}\d){6,14}")
PHONE_TAIL = 9  # phones are compared on their last 9 digits: country-code and format blind


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@dataclass
class Watchlist:
    tokens: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)  # last PHONE_TAIL digits

    def add_phone(self, raw: str) -> None:
        number = digits(raw)
        if len(number) >= 7:
            self.phones.add(number[-PHONE_TAIL:])

    @classmethod
    def from_stack(cls, stack: LocalStack, *, jwts: Iterable[str] = ()) -> Watchlist:
        """Everything secret or personal the stack's sandboxes hold right now."""
        watch = cls(tokens=set(jwts))
        graph, crm = stack.graph.sandbox, stack.pipedrive.sandbox
        watch.tokens |= {graph.client_secret, crm.client_secret}
        watch.tokens |= set(graph._access) | set(graph._refresh)
        watch.tokens |= set(crm._access) | set(crm._refresh)
        watch.tokens |= {user.api_token for user in crm.users.values()}
        watch.tokens |= set(stack.carddav.users.values())  # CardDAV app-specific passwords
        watch.tokens |= {s.client_state for s in graph.subscriptions.values() if s.client_state}
        watch.tokens |= {
            h.http_auth_password for h in crm.webhooks.values() if h.http_auth_password
        }
        for person in crm.persons.values():
            watch.emails |= {str(e.get("value", "")).lower() for e in person.emails}
            for phone in person.phones:
                watch.add_phone(str(phone.get("value", "")))
        watch.emails |= {user.email.lower() for user in crm.users.values()}
        for contact in graph.contacts.values():
            props = contact.props
            watch.emails |= {
                str(e.get("address", "")).lower() for e in props.get("emailAddresses", [])
            }
            for phone in [*props.get("businessPhones", []), *props.get("homePhones", [])]:
                watch.add_phone(str(phone))
            if props.get("mobilePhone"):
                watch.add_phone(str(props["mobilePhone"]))
        watch.tokens.discard("")
        watch.emails.discard("")
        return watch


def token_leaks(text: str, watch: Watchlist) -> list[str]:
    """Known secrets, JWTs and token-shaped key/value pairs in ``text``."""
    found = [f"secret {t[:6]}... in plain text" for t in watch.tokens if t in text]
    found += [f"a JWT {m.group(0)[:12]}..." for m in JWT.finditer(text)]
    found += [f"a {m.group(1)} field" for m in TOKEN_KEYS.finditer(text)]
    return found


def personal_data_leaks(text: str, watch: Watchlist) -> list[str]:
    """Watched e-mail addresses and phone numbers in ``text`` (any case, any phone format)."""
    lowered = text.lower()
    found = [f"email {e}" for e in sorted(watch.emails) if e in lowered]
    for match in PHONE_RUN.finditer(text):
        number = digits(match.group(0))
        if any(phone in number for phone in watch.phones):
            found.append(f"phone {match.group(0)}")
    return found


def log_leaks(text: str, watch: Watchlist) -> list[str]:
    return token_leaks(text, watch) + personal_data_leaks(text, watch)


def _texts(value: Any) -> Iterable[str]:
    """Every string inside a DynamoDB attribute value (low-level client shape), binaries decoded
    as UTF-8 and base64 where they decode."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
        yield raw.decode("utf-8", errors="replace")
        with contextlib.suppress(binascii.Error, ValueError):
            yield base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")
    elif isinstance(value, str):
        yield value
        if len(value) >= 16:
            with contextlib.suppress(binascii.Error, ValueError):
                yield base64.b64decode(value, validate=True).decode("utf-8", errors="replace")


def item_leaks(items: Iterable[dict[str, Any]], watch: Watchlist) -> list[str]:
    """Secrets stored in plain text in any attribute of any item."""
    found = []
    for item in items:
        key = f"{_texts(item.get('PK')).__next__()}|{_texts(item.get('SK')).__next__()}"
        for name, value in item.items():
            for text in _texts(value):
                found += [f"{key} {name}: {leak}" for leak in token_leaks(text, watch)]
    return found


def scan_table(dynamodb: Any, table_name: str) -> list[dict[str, Any]]:
    """Every item of the table (tests only: nothing on a request path scans)."""
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table_name):
        items.extend(page["Items"])
    return items
