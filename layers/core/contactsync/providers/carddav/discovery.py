"""Finding a user's address books from a server URL or an email address (RFC 6764, RFC 6352).

From the address: a known provider's server (iCloud, Fastmail), else ``https://<domain>``. From
the server: ``/.well-known/carddav`` (followed through its redirect) or the URL itself answers
``current-user-principal``; the principal answers ``addressbook-home-set``; the home's children
whose resource type is ``card:addressbook`` are the address books.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from contactsync.providers.base import NotFound, ProviderError
from contactsync.providers.carddav.dav import (
    CARDDAV,
    DAV,
    NS,
    DavClient,
    parse_multistatus,
    tag,
)

KNOWN_SERVERS = {
    "icloud.com": "https://contacts.icloud.com",
    "me.com": "https://contacts.icloud.com",
    "mac.com": "https://contacts.icloud.com",
    "fastmail.com": "https://carddav.fastmail.com",
    "fastmail.fm": "https://carddav.fastmail.com",
}


@dataclass(frozen=True)
class Account:
    principal_url: str  # who the credentials belong to: the account's identity
    home_url: str  # where the address books are


def server_for(email: str) -> str:
    """The server an email address's contacts are probably on."""
    domain = email.rpartition("@")[2].strip().lower()
    return KNOWN_SERVERS.get(domain, f"https://{domain}")


def discover(dav: DavClient, server_url: str) -> Account:
    """The principal and address book home the credentials lead to. AuthExpired when the server
    refuses them; NotFound when nothing there speaks CardDAV."""
    parts = urlsplit(server_url)
    root = f"{parts.scheme}://{parts.netloc}"
    well_known = root + "/.well-known/carddav"
    tried = [well_known, server_url] if parts.path in ("", "/") else [server_url, well_known]
    principal = ""
    for url in tried:
        resp = dav.propfind(url, "0", (DAV, "current-user-principal"), (DAV, "resourcetype"))
        if resp.status_code != 207:
            continue
        responses, _ = parse_multistatus(resp.content, str(resp.url))
        for r in responses:
            element = r.props.get(tag(DAV, "current-user-principal"))
            href = element.findtext("d:href", "", NS).strip() if element is not None else ""
            if href:
                principal = urljoin(str(resp.url), href)
                break
        if principal:
            break
    if not principal:
        raise NotFound(f"no CardDAV account answers at {server_url}", status=404)
    resp = dav.propfind(principal, "0", (CARDDAV, "addressbook-home-set"))
    if resp.status_code != 207:
        raise ProviderError(
            f"the CardDAV server did not say where the address books are ({resp.status_code})",
            status=resp.status_code,
        )
    responses, _ = parse_multistatus(resp.content, principal)
    for r in responses:
        element = r.props.get(tag(CARDDAV, "addressbook-home-set"))
        href = element.findtext("d:href", "", NS).strip() if element is not None else ""
        if href:
            return Account(principal, urljoin(principal, href))
    raise NotFound(f"the CardDAV account at {server_url} has no address book home", status=404)


def address_books(dav: DavClient, home_url: str) -> list[tuple[str, str]]:
    """(URL, name) of every address book in the home, by name."""
    resp = dav.propfind(home_url, "1", (DAV, "resourcetype"), (DAV, "displayname"))
    if resp.status_code != 207:
        raise ProviderError(
            f"the CardDAV server did not list the address books ({resp.status_code})",
            status=resp.status_code,
        )
    books = []
    for r in parse_multistatus(resp.content, home_url)[0]:
        kind = r.props.get(tag(DAV, "resourcetype"))
        if kind is None or kind.find(tag(CARDDAV, "addressbook")) is None:
            continue
        url = urljoin(home_url, r.href)
        url = url if url.endswith("/") else url + "/"
        name = r.text(tag(DAV, "displayname")) or r.href.rstrip("/").rpartition("/")[2]
        books.append((url, name))
    return sorted(books, key=lambda b: (b[1].casefold(), b[0]))
