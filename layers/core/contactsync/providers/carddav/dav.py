"""WebDAV / CardDAV over httpx: the requests we send and the multistatus answers we read.

PROPFIND and REPORT are plain HTTP methods with an XML body; answers are ``207 Multi-Status``.
Every request goes through the transport with HTTP Basic credentials (CardDAV has no OAuth;
iCloud wants an app-specific password), under CardDAV's rules (``DAV_RULES``): 401 is AuthExpired
with a message that says to make a new app-specific password, 429 and 503 with Retry-After are
RateLimited, other 5xx (but 501 and 507) and timeouts are sent again twice briefly (a PUT that
creates only when it never left) then Transient. Other statuses come back to the caller.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx

from contactsync.providers.base import Transient
from contactsync.providers.transport import Basic, Login, Rules, Transport

DAV = "DAV:"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CS = "http://calendarserver.org/ns/"
NS = {"d": DAV, "card": CARDDAV}
DEFAULT_RETRY_AFTER = 30.0
REAUTH = (
    "the CardDAV server refused the username and password: make a new app-specific password "
    "(iCloud: appleid.apple.com > Sign-In and Security > App-Specific Passwords; Fastmail: "
    "Settings > Privacy & Security > App passwords; Nextcloud: Settings > Security > Devices & "
    "sessions) and reconnect with it"
)

Credentials = Login


def _message(resp: httpx.Response) -> str:
    if resp.status_code == 401:
        return REAUTH
    if _throttled(resp):
        return f"the CardDAV server asks us to slow down ({resp.status_code})"
    return f"the CardDAV server failed ({resp.status_code})"


def _throttled(resp: httpx.Response) -> bool:
    return resp.status_code == 429 or (resp.status_code == 503 and "Retry-After" in resp.headers)


def _transient(status: int) -> bool:
    # 501: the server does not do what we asked (a REPORT it lacks); 507: the account is full or
    # the answer was cut short. Trying again cannot help either.
    return status >= 500 and status not in (501, 507)


DAV_RULES = Rules(
    unreachable="the CardDAV server is unreachable",
    message=_message,
    throttled=_throttled,
    transient=_transient,
    retry_after=DEFAULT_RETRY_AFTER,
)


@dataclass(frozen=True)
class Response:
    """One ``<d:response>`` of a multistatus: its href (a path), status and found properties."""

    href: str
    status: int
    props: dict[str, ET.Element] = field(default_factory=dict)

    def text(self, name: str) -> str:
        element = self.props.get(name)
        return (element.text or "").strip() if element is not None else ""


def path_of(href: str, base: str) -> str:
    """An href (absolute or relative to ``base``) as a decoded path: our contact ids."""
    return unquote(urlsplit(urljoin(base, href)).path)


def href_of(path: str) -> str:
    return quote(path, safe="/:@!$&'()*+,;=~")


def tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def xml_body(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root)


def propfind_body(*props: tuple[str, str]) -> bytes:
    root = ET.Element(tag(DAV, "propfind"))
    prop = ET.SubElement(root, tag(DAV, "prop"))
    for ns, name in props:
        ET.SubElement(prop, tag(ns, name))
    return xml_body(root)


def sync_collection_body(token: str) -> bytes:
    root = ET.Element(tag(DAV, "sync-collection"))
    ET.SubElement(root, tag(DAV, "sync-token")).text = token
    ET.SubElement(root, tag(DAV, "sync-level")).text = "1"
    prop = ET.SubElement(root, tag(DAV, "prop"))
    ET.SubElement(prop, tag(DAV, "getetag"))
    return xml_body(root)


def multiget_body(paths: list[str]) -> bytes:
    root = ET.Element(tag(CARDDAV, "addressbook-multiget"))
    prop = ET.SubElement(root, tag(DAV, "prop"))
    ET.SubElement(prop, tag(DAV, "getetag"))
    ET.SubElement(prop, tag(CARDDAV, "address-data"))
    for path in paths:
        ET.SubElement(root, tag(DAV, "href")).text = href_of(path)
    return xml_body(root)


def addressbook_query_body(filters: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """An ``addressbook-query`` (RFC 6352 §8.6) for the ETags and bodies of the cards matching
    any of ``filters``: a property name and texts that one value of it must all contain, compared
    without case (``text-match``, §10.5.4, in the default ``i;unicode-casemap`` collation)."""
    root = ET.Element(tag(CARDDAV, "addressbook-query"))
    prop = ET.SubElement(root, tag(DAV, "prop"))
    ET.SubElement(prop, tag(DAV, "getetag"))
    ET.SubElement(prop, tag(CARDDAV, "address-data"))
    any_of = ET.SubElement(root, tag(CARDDAV, "filter"), test="anyof")
    for name, texts in filters:
        prop_filter = ET.SubElement(any_of, tag(CARDDAV, "prop-filter"), name=name, test="allof")
        for text in texts:
            match = ET.SubElement(prop_filter, tag(CARDDAV, "text-match"))
            match.set("match-type", "contains")
            match.text = text
    return xml_body(root)


def parse_multistatus(content: bytes, base: str) -> tuple[list[Response], str]:
    """The responses of a multistatus answer and its sync-token ("" when none).

    ElementTree resolves no external entities, and the expat it ships with (2.4+) refuses
    entity-expansion bombs, so a hostile server's XML cannot reach files or exhaust memory.
    """
    try:
        root = ET.fromstring(content)  # noqa: S314 - see the docstring
    except ET.ParseError as exc:
        raise Transient(f"the CardDAV server sent a malformed answer: {exc}") from exc
    out: list[Response] = []
    for response in root.findall("d:response", NS):
        href = (response.findtext("d:href", "", NS) or "").strip()
        status = _status(response.findtext("d:status", "", NS))
        props: dict[str, ET.Element] = {}
        for propstat in response.findall("d:propstat", NS):
            if _status(propstat.findtext("d:status", "", NS)) != 200:
                continue
            for prop in propstat.findall("d:prop", NS):
                for element in prop:
                    props[element.tag] = element
        if status == 0:
            status = 200 if props else 404
        out.append(Response(path_of(href, base), status, props))
    return out, (root.findtext("d:sync-token", "", NS) or "").strip()


def _status(line: str | None) -> int:
    """ "HTTP/1.1 404 Not Found" -> 404; no status line -> 0."""
    parts = (line or "").split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


class DavClient:
    """Requests to one CardDAV server with one account's credentials."""

    def __init__(self, client: httpx.Client, credentials: Credentials) -> None:
        self._http = Transport(client, DAV_RULES, Basic(credentials))

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        sent = {"Content-Type": "application/xml; charset=utf-8", **(headers or {})}
        return self._http.send(
            method, url, content=body, headers=sent, retry=retry, follow_redirects=True
        )

    def propfind(self, url: str, depth: str, *props: tuple[str, str]) -> httpx.Response:
        return self.request("PROPFIND", url, body=propfind_body(*props), headers={"Depth": depth})

    def report(self, url: str, body: bytes, depth: str = "1") -> httpx.Response:
        return self.request("REPORT", url, body=body, headers={"Depth": depth})


def card_bodies(responses: Iterable[Response]) -> dict[str, tuple[str, str] | None]:
    """path -> (vCard text, ETag) of the cards in a multistatus answer; None for one gone."""
    out: dict[str, tuple[str, str] | None] = {}
    for r in responses:
        data = r.text(tag(CARDDAV, "address-data"))
        if r.status in (404, 410):
            out[r.href] = None
        elif r.status == 200 and data:
            out[r.href] = (data, r.text(tag(DAV, "getetag")))
    return out
