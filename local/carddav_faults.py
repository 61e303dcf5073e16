"""A fault-injecting proxy in front of the local CardDAV server (Radicale), for the chaos run.

Real CardDAV servers fail in ways Radicale on loopback never does. The proxy passes every request
through to the server unchanged, except the ones a fault switched on for (``inject``) hits, one
request per fault, as the sandboxes' injected faults do:

- ``429`` / ``503``: the server asks us to slow down (``Retry-After: 1``), nothing reaches it;
- ``503_bare``: a 503 without Retry-After (a server briefly down), nothing reaches it;
- ``reset``: the connection drops before the request reaches the server;
- ``lost_answer``: the request runs (a write happens) and the connection drops before its answer;
  ``lost_create_answer`` the same, waiting for a card's creation (a ``PUT`` ``If-None-Match``);
- ``cut_short``: a multistatus answer (PROPFIND, REPORT) cut in half: malformed XML;
- ``sync_token_invalid``: a ``sync-collection`` with a token fails the ``DAV:valid-sync-token``
  precondition (RFC 6578 §3.2, a 403): the server forgot the token, the client lists again;
- ``sync_truncated``: a ``sync-collection`` answer reporting two changes or more keeps its first
  half and reports the collection itself 507 (RFC 6578 §3.6) with the token it was asked from,
  so the client asks again from there;
- ``multiget_partial``: an ``addressbook-multiget`` answer leaves one of the cards out;
- ``precondition``: another client rewrites the card (a new ``REV``, the same contact) just
  before a write conditioned on its ETag (``If-Match``) reaches the server, which answers 412.

A fault waits for the first request it applies to. ``latency_ms`` slows every answer down.
"""

from __future__ import annotations

import asyncio
import re
import threading
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox.server import RunningServer, start

DAV = "DAV:"
FAULTS = frozenset(
    {
        "429",
        "503",
        "503_bare",
        "reset",
        "lost_answer",
        "lost_create_answer",
        "cut_short",
        "sync_token_invalid",
        "sync_truncated",
        "multiget_partial",
        "precondition",
    }
)
METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PROPFIND", "PROPPATCH", "REPORT", "MKCOL"]
INVALID_TOKEN = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>'
)
# Headers that belong to one hop, or that the proxy's own client sets again.
HOP_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding"}
)
_SYNC_TOKEN = re.compile(rb"<(?:[\w-]+:)?sync-token\s*>\s*([^<\s][^<]*)</", re.IGNORECASE)


@dataclass(frozen=True)
class Asked:
    """What a request is, as far as the faults care."""

    method: str
    report: str  # "sync-collection", "addressbook-multiget", "addressbook-query" or ""
    token: str  # the sync token a sync-collection was asked from ("" for a first listing)
    conditional: bool  # a write conditioned on an ETag (If-Match)
    creates: bool = False  # a PUT that makes a card only where there is none (If-None-Match)

    @classmethod
    def of(cls, method: str, headers: Any, body: bytes) -> Asked:
        report = ""
        if method == "REPORT":
            for name in ("sync-collection", "addressbook-multiget", "addressbook-query"):
                if name.encode() in body:
                    report = name
                    break
        found = _SYNC_TOKEN.search(body) if report == "sync-collection" else None
        token = found.group(1).decode().strip() if found else ""
        conditional = method in ("PUT", "DELETE") and "if-match" in headers
        creates = method == "PUT" and "if-none-match" in headers
        return cls(method, report, token, conditional, creates)

    @property
    def kind(self) -> str:
        """How ``DavFaults.asked`` counts it: "REPORT sync-collection", "PUT If-Match", …"""
        if self.report:
            return f"REPORT {self.report}"
        return f"{self.method} If-Match" if self.conditional else self.method

    def fits(self, fault: str) -> bool:
        if fault == "cut_short":
            return self.method in ("PROPFIND", "REPORT")
        if fault == "sync_token_invalid":
            return self.report == "sync-collection" and bool(self.token)
        if fault == "sync_truncated":
            return self.report == "sync-collection"
        if fault == "multiget_partial":
            return self.report == "addressbook-multiget"
        if fault == "precondition":
            return self.conditional
        if fault == "lost_create_answer":
            return self.creates
        return True


@dataclass
class DavFaults:
    """The faults switched on, waiting for the requests they hit; what hit, by kind; the
    requests that came, by kind."""

    latency_ms: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    asked: Counter[str] = field(default_factory=Counter)
    _waiting: deque[str] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, kind: str, count: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown CardDAV fault {kind!r}; one of {sorted(FAULTS)}")
        with self._lock:
            self._waiting.extend([kind] * count)

    def clear(self) -> None:
        with self._lock:
            self._waiting.clear()
        self.latency_ms = 0

    def waiting(self) -> list[str]:
        with self._lock:
            return list(self._waiting)

    def take(self, asked: Asked) -> str | None:
        """The first waiting fault this request fits, taken off the list."""
        with self._lock:
            self.asked[asked.kind] += 1
            for i, kind in enumerate(self._waiting):
                if asked.fits(kind):
                    del self._waiting[i]
                    return kind
        return None

    def put_back(self, kind: str) -> None:
        """A fault that turned out not to apply (an answer with too little to truncate)."""
        with self._lock:
            self._waiting.appendleft(kind)

    def hit(self, kind: str) -> None:
        with self._lock:
            self.hits[kind] += 1


@dataclass
class RunningDavFaults:
    url: str  # where clients connect instead of the server
    upstream: str
    faults: DavFaults
    _server: RunningServer = field(repr=False)

    def stop(self) -> None:
        self._server.stop()


def start_carddav_faults(upstream: str, faults: DavFaults | None = None) -> RunningDavFaults:
    """The proxy on a free loopback port, in front of ``upstream`` (``http://127.0.0.1:PORT``)."""
    faults = faults or DavFaults()
    server = start(build_proxy(upstream, faults))
    return RunningDavFaults(server.url, upstream, faults, server)


def build_proxy(upstream: str, faults: DavFaults) -> Starlette:
    upstream = upstream.rstrip("/")
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        clients["http"] = httpx.AsyncClient(base_url=upstream, timeout=30)
        try:
            yield
        finally:
            await clients["http"].aclose()

    async def forward(request: Request) -> Response:
        http = clients["http"]
        body = await request.body()
        asked = Asked.of(request.method, request.headers, body)
        fault = faults.take(asked)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if fault in ("429", "503", "503_bare"):
            faults.hit(fault)
            status = 429 if fault == "429" else 503
            headers = {} if fault == "503_bare" else {"Retry-After": "1"}
            return Response(b"", status_code=status, headers=headers)
        if fault == "reset":
            faults.hit(fault)
            return DroppedConnection()
        if fault == "sync_token_invalid":
            faults.hit(fault)
            return Response(INVALID_TOKEN, status_code=403, media_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if fault == "precondition":
            if await _edit_concurrently(http, target, headers):
                faults.hit(fault)
            else:
                faults.put_back(fault)
        answer = await http.request(request.method, target, content=body, headers=headers)
        content = answer.content
        if fault in ("lost_answer", "lost_create_answer"):
            faults.hit(fault)
            return DroppedConnection()
        if fault == "cut_short" and answer.status_code == 207:
            faults.hit(fault)
            content = content[: max(1, len(content) // 2)]
        elif fault == "sync_truncated" and answer.status_code == 207:
            cut = _truncated(content, request.url.path, asked.token)
            if cut is None:
                faults.put_back(fault)
            else:
                faults.hit(fault)
                content = cut
        elif fault == "multiget_partial" and answer.status_code == 207:
            partial = _one_left_out(content)
            if partial is None:
                faults.put_back(fault)
            else:
                faults.hit(fault)
                content = partial
        elif fault in ("cut_short", "sync_truncated", "multiget_partial"):
            faults.put_back(fault)
        kept = {
            k: v.replace(upstream, str(request.base_url).rstrip("/"))
            for k, v in answer.headers.items()
            if k.lower() not in HOP_HEADERS and k.lower() != "content-encoding"
        }
        return Response(content, status_code=answer.status_code, headers=kept)

    routes = [Route("/{path:path}", forward, methods=METHODS)]
    return Starlette(routes=routes, lifespan=lifespan)


async def _edit_concurrently(http: httpx.AsyncClient, target: str, headers: dict[str, str]) -> bool:
    """Another client saves the card again (a new REV, the same contact): its ETag changes.
    False when there is no card to save (a write to a card that is gone)."""
    auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
    current = await http.get(target, headers=auth)
    if current.status_code != 200:
        return False
    lines = [
        line
        for line in current.text.replace("\r\n", "\n").split("\n")
        if line and not line.upper().startswith(("REV:", "REV;"))
    ]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    end = max(i for i, line in enumerate(lines) if line.upper() == "END:VCARD")
    lines.insert(end, f"REV:{stamp}")
    saved = await http.put(
        target,
        content="\r\n".join([*lines, ""]).encode(),
        headers={**auth, "Content-Type": "text/vcard; charset=utf-8"},
    )
    return saved.status_code in (200, 201, 204)


def _truncated(content: bytes, book_path: str, token: str) -> bytes | None:
    """A sync-collection answer cut after its first half of changes, the collection reported
    507 and the token it was asked from kept (the rest comes with the next request); None when
    there are fewer than two changes to cut between."""
    root = _parse(content)
    if root is None:
        return None
    responses = root.findall(f"{{{DAV}}}response")
    if len(responses) < 2:
        return None
    for dropped in responses[(len(responses) + 1) // 2 :]:
        root.remove(dropped)
    book = ET.Element(f"{{{DAV}}}response")
    ET.SubElement(book, f"{{{DAV}}}href").text = book_path
    ET.SubElement(book, f"{{{DAV}}}status").text = "HTTP/1.1 507 Insufficient Storage"
    sync_token = root.find(f"{{{DAV}}}sync-token")
    if sync_token is None:
        sync_token = ET.SubElement(root, f"{{{DAV}}}sync-token")
    root.remove(sync_token)
    root.append(book)
    sync_token.text = token
    root.append(sync_token)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root)


def _one_left_out(content: bytes) -> bytes | None:
    """A multiget answer without its last card (None when it names none)."""
    root = _parse(content)
    if root is None:
        return None
    responses = root.findall(f"{{{DAV}}}response")
    if not responses:
        return None
    root.remove(responses[-1])
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root)


def _parse(content: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(content)  # noqa: S314 - the local Radicale's own answer
    except ET.ParseError:
        return None


class DroppedConnection(Response):
    """Starts an answer and never finishes it: the connection closes mid-answer."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 207,
                "headers": [(b"content-type", b"application/xml"), (b"content-length", b"512")],
            }
        )
