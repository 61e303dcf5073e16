"""Microsoft sign-in with MSAL: the authorization-code flow (PKCE) and silent token refresh.

The user's MSAL token cache (``MicrosoftGrant.token_cache``) is a secret: callers encrypt it
before it is stored and hand it back here to get an access token. One
``ConfidentialClientApplication`` is kept per configuration, so a warm Lambda skips the
authority discovery; its token cache object is refilled from the caller's cache on every call,
under a lock.

TLS: when ``ca_bundle`` is set (local runs against the identity sandbox) MSAL gets an HTTP
session that verifies with that bundle and ignores ``REQUESTS_CA_BUNDLE`` (which would otherwise
override ``verify`` inside requests). Without it, the platform's usual trust store is used.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from contactsync.providers.base import AuthExpired, Transient

HTTP_TIMEOUT = 10.0
# Errors that mean the grant is gone and only the user signing in again can fix it.
REAUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required"})


@dataclass(frozen=True)
class MicrosoftOAuthConfig:
    client_id: str
    client_secret: str = field(repr=False)
    authority: str  # e.g. "https://login.microsoftonline.com/common"
    scopes: tuple[str, ...] = ("Contacts.ReadWrite", "User.Read")
    ca_bundle: str | None = None  # a CA bundle to verify the authority with (local runs)


@dataclass(frozen=True)
class MicrosoftGrant:
    token_cache: str = field(repr=False)  # msal SerializableTokenCache, serialised: a secret
    account_id: str  # MSAL's home_account_id ("<oid>.<tenant id>")
    username: str  # the user's sign-in name (email / UPN)


@dataclass
class _Client:
    app: Any  # msal.ConfidentialClientApplication (untyped)
    cache: Any  # msal.SerializableTokenCache shared with ``app``
    lock: threading.Lock
    failures: tuple[type[Exception], ...]  # what an unreachable or failing authority raises


@functools.lru_cache(maxsize=8)
def _client(cfg: MicrosoftOAuthConfig) -> _Client:
    """One MSAL application per configuration (authority discovery happens here, once)."""
    # Lazy: msal and requests load only when a Microsoft sign-in or token needs them.
    import msal  # noqa: PLC0415
    import requests  # noqa: PLC0415

    session = requests.Session()
    if cfg.ca_bundle:
        session.verify = cfg.ca_bundle
        session.trust_env = False  # REQUESTS_CA_BUNDLE must not override the bundle we chose
    # msal calls the session's ``request``; wrapped, every call it makes has our timeout (mypy
    # refuses any assignment to a method).
    session.request = functools.partial(session.request, timeout=HTTP_TIMEOUT)  # type: ignore[method-assign]
    cache = msal.SerializableTokenCache()
    loopback = cfg.authority.startswith(("https://127.0.0.1", "https://localhost"))
    app = msal.ConfidentialClientApplication(
        cfg.client_id,
        client_credential=cfg.client_secret,
        authority=cfg.authority,
        token_cache=cache,
        http_client=session,
        # A local identity sandbox is not a known Microsoft host: skip instance discovery.
        instance_discovery=not loopback,
        validate_authority=not loopback,
    )
    failures = (requests.RequestException, msal.exceptions.MsalServiceError)
    return _Client(app=app, cache=cache, lock=threading.Lock(), failures=failures)


def start_sign_in(
    cfg: MicrosoftOAuthConfig,
    redirect_uri: str,
    *,
    login_hint: str | None = None,
    state: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The URL to send the user to, and the flow to keep (encrypted) until they come back.

    ``state`` lets the caller find its own record again on the callback (msal makes one up
    otherwise); it must be unguessable."""
    client = _client(cfg)
    flow = client.app.initiate_auth_code_flow(
        list(cfg.scopes), redirect_uri=redirect_uri, login_hint=login_hint, state=state
    )
    if "auth_uri" not in flow:
        raise ValueError(f"could not start the sign-in: {flow.get('error', 'unknown error')}")
    return str(flow["auth_uri"]), cast(dict[str, Any], flow)


def finish_sign_in(
    cfg: MicrosoftOAuthConfig, flow: dict[str, Any], query: dict[str, str]
) -> MicrosoftGrant:
    """Redeem the code the user came back with. ValueError on a bad state or a denied consent;
    AuthExpired when the code is no longer valid."""
    if "error" in query:
        raise ValueError(f"sign-in refused: {query.get('error_description') or query['error']}")
    with _holding(_client(cfg), None) as client:
        result = client.app.acquire_token_by_auth_code_flow(dict(flow), dict(query))
        if "error" in result:
            _raise_for(result)
        accounts = client.app.get_accounts()
        if not accounts:
            raise AuthExpired("the identity provider returned no account")
        account = accounts[0]
        return MicrosoftGrant(
            token_cache=str(client.cache.serialize()),
            account_id=str(account["home_account_id"]),
            username=str(account.get("username", "")),
        )


def access_token(
    cfg: MicrosoftOAuthConfig, token_cache: str, *, force_refresh: bool = False
) -> tuple[str, str]:
    """A bearer token for Graph and the (possibly refreshed) cache to store back.

    Raises AuthExpired when the cache has no account or the refresh token was refused.
    """
    with _holding(_client(cfg), token_cache) as client:
        accounts = client.app.get_accounts()
        if not accounts:
            raise AuthExpired("no signed-in account in the token cache")
        result = client.app.acquire_token_silent_with_error(
            list(cfg.scopes), accounts[0], force_refresh=force_refresh
        )
        if not result:
            raise AuthExpired("no usable token in the cache")
        if "error" in result:
            _raise_for(result)
        changed = bool(client.cache.has_state_changed)
        new_cache = str(client.cache.serialize()) if changed else token_cache
        return str(result["access_token"]), new_cache


@contextmanager
def _holding(client: _Client, token_cache: str | None) -> Iterator[_Client]:
    """The shared MSAL app with one user's cache loaded; emptied again afterwards."""
    with client.lock:
        client.cache.deserialize(token_cache)
        try:
            yield client
        except client.failures as exc:
            raise Transient(f"identity provider unreachable or failing: {exc}") from exc
        finally:
            client.cache.deserialize(None)  # leave no user's tokens in the shared object


def _raise_for(result: dict[str, Any]) -> None:
    error = str(result.get("error"))
    description = str(result.get("error_description", "")).splitlines()[0:1]
    message = f"{error}: {description[0] if description else ''}"
    if error in REAUTH_ERRORS:
        raise AuthExpired(message, status=400)
    raise Transient(message)
