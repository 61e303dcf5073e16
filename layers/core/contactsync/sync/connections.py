"""The connection lifecycle behind the admin API: connect, choose, start, stop, look.

A user acts on their own connections; a company admin on the company's; nobody across companies
(another company's connection is simply not found).
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import phonenumbers

from contactsync.auth import pipedrive as pipedrive_auth
from contactsync.auth.tokens import connection_context, crm_sign_in_context, sign_in_context
from contactsync.providers.base import AuthExpired, NotFound, ProviderError, Transient
from contactsync.providers.carddav import server_for
from contactsync.runtime.messages import SyncMessage
from contactsync.runtime.queue import PassQueue
from contactsync.runtime.sides import GOOGLE_DEFAULT_GROUP, PROVIDERS, SignedIn, Wiring
from contactsync.store import repository as repo
from contactsync.sync.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequest,
    NotFoundError,
    UpstreamError,
)
from contactsync.sync.push import secret_hash
from contactsync.sync.subscriptions import subscribe

DIRECTIONS = ("two_way", "to_crm", "to_provider")
# The CRM's visible_to for the persons a sync creates: owner only, the owner's visibility group,
# the entire company (Pipedrive's Professional / Enterprise values; the CRM refuses others).
VISIBILITIES = {"owner": 1, "group": 3, "company": 7}
CONFLICT_POLICIES = ("newest_wins", "crm_wins", "provider_wins")
RUNNING_STATES = ("syncing_initial", "active", "needs_attention")

T = TypeVar("T")

STOP_WAIT_SECONDS = 10.0  # under API Gateway's 29 s; a pass lets go between chunks


@dataclass(frozen=True)
class CardDavLogin:
    """What a user gives to connect a CardDAV account (no OAuth exists for it)."""

    username: str = ""
    password: str = field(default="", repr=False)
    server_url: str = ""
    email: str = ""


CARDDAV_EXAMPLE = {
    "provider": "carddav",
    "server_url": "https://contacts.icloud.com",
    "username": "you@icloud.com",
    "password": "xxxx-xxxx-xxxx-xxxx",
}


@dataclass(frozen=True)
class Caller:
    user_id: str
    company_id: str
    is_admin: bool = False


class ConnectionService:
    def __init__(self, wiring: Wiring, queue: PassQueue) -> None:
        self.wiring = wiring
        self.queue = queue

    @property
    def clock(self) -> Any:
        return self.wiring.clock

    # --- the CRM account ---------------------------------------------------------------------

    def crm_authorization(self, caller: Caller) -> dict[str, str]:
        """Where to send the user to let us act on their CRM persons.

        The state is a nonce and nothing else: whose sign-in it is stays in the table.
        """
        state = f"crm.{secrets.token_urlsafe(32)}"
        sealed = self.wiring.vault.seal_json(
            {"state": state}, crm_sign_in_context(caller.company_id, caller.user_id)
        )
        repo.put_crm_sign_in(caller.company_id, caller.user_id, state, sealed)
        url = pipedrive_auth.authorization_url(
            self.wiring.pipedrive, self.wiring.redirect_uri("pipedrive"), state
        )
        return {"authorization_url": url}

    def finish_crm_authorization(self, query: dict[str, str], caller: Caller) -> dict[str, Any]:
        state = query.get("state", "")
        pending = repo.get_crm_sign_in(state) if state.startswith("crm.") else None
        if pending is not None and (pending.company_id, pending.user_id) != (
            caller.company_id,
            caller.user_id,
        ):
            # Only the user who started the authorization may finish it.
            raise NotFoundError("no CRM authorization of yours is in progress for this state")
        if pending is None:
            raise InvalidRequest("no CRM authorization is in progress for this state")
        company_id, user_id = pending.company_id, pending.user_id
        context = crm_sign_in_context(company_id, user_id)
        expected = self.wiring.vault.open_json(bytes(pending.oauth_state), context)
        if not secrets.compare_digest(str(expected.get("state", "")), state):
            raise InvalidRequest("the state parameter does not match")
        if "code" not in query:
            raise InvalidRequest(f"the CRM refused: {query.get('error', 'no code returned')}")
        try:
            grant = pipedrive_auth.exchange_code(
                self.wiring.pipedrive,
                query["code"],
                self.wiring.redirect_uri("pipedrive"),
                client=self.wiring.http,
            )
            approver = self.wiring.crm_user(grant)
        except AuthExpired as exc:
            raise InvalidRequest(f"the CRM did not accept the authorization: {exc}") from exc
        except ProviderError as exc:
            raise UpstreamError(f"the CRM did not answer: {exc.message}") from exc
        repo.delete_crm_sign_in(state)  # one use, whatever the outcome from here
        if (str(approver.get("id")), str(approver.get("company_id"))) != (user_id, company_id):
            raise ForbiddenError(
                "the CRM account that approved is not yours: sign in to the CRM as yourself "
                "and connect again"
            )
        self.wiring.tokens.save_crm_grant(company_id, user_id, grant)
        return {"connected": "crm", "company_id": company_id, "user_id": user_id}

    # --- connections -------------------------------------------------------------------------

    def create(
        self, caller: Caller, provider: str, login: CardDavLogin | None = None
    ) -> dict[str, Any]:
        """A new connection ("add new account") and the provider's sign-in URL; a CardDAV
        connection signs in at once with the login given."""
        if provider not in PROVIDERS:
            raise InvalidRequest(
                f"unknown provider {provider!r}", details={"allowed": list(PROVIDERS)}
            )
        if provider == "carddav":
            return self._create_carddav(caller, login)
        connection_id = uuid.uuid4().hex[:20]
        url, sealed = self._sign_in(provider, connection_id)
        repo.create_connection(
            connection_id=connection_id,
            company_id=caller.company_id,
            user_id=caller.user_id,
            provider=provider,
            oauth_state=sealed,
        )
        return {"connection": self.view(self._get(caller, connection_id)), "authorization_url": url}

    def reconnect(
        self, caller: Caller, connection_id: str, login: CardDavLogin | None = None
    ) -> dict[str, Any]:
        """Sign in again (an expired or revoked token). The same account keeps its links; another
        account starts clean (decided when the callback arrives). CardDAV signs in again at once
        with the new (app-specific) password given."""
        conn = self._get(caller, connection_id)
        if conn.provider == "carddav":
            return self._reconnect_carddav(caller, conn, login)
        url, sealed = self._sign_in(conn.provider, connection_id)
        repo.update_connection(connection_id, oauth_state=sealed)
        return {"connection": self.view(self._get(caller, connection_id)), "authorization_url": url}

    def _create_carddav(self, caller: Caller, login: CardDavLogin | None) -> dict[str, Any]:
        if login is None or not (login.server_url or login.email):
            raise InvalidRequest(
                "a CardDAV connection needs username, password and server_url (or email)",
                details={"example": CARDDAV_EXAMPLE},
            )
        signed = self._carddav_sign_in(login.server_url or server_for(login.email), login)
        connection_id = uuid.uuid4().hex[:20]
        repo.create_connection(
            connection_id=connection_id,
            company_id=caller.company_id,
            user_id=caller.user_id,
            provider="carddav",
        )
        conn = self._get(caller, connection_id)
        self._signed_in_as(conn, signed)
        with contextlib.suppress(ProviderError):
            books = self.wiring.carddav_books(signed.secrets)
            if len(books) == 1:  # the only address book is the one to sync
                repo.update_connection(
                    connection_id, folder_id=books[0][0], folder_name=books[0][1]
                )
        return {"connection": self.view(self._get(caller, connection_id))}

    def _reconnect_carddav(
        self, caller: Caller, conn: Any, login: CardDavLogin | None
    ) -> dict[str, Any]:
        if login is None or not login.password:
            raise InvalidRequest(
                "send the new app-specific password to reconnect a CardDAV account",
                details={"example": {"password": "xxxx-xxxx-xxxx-xxxx"}},
            )
        old: dict[str, Any] = {}
        if conn.credentials is not None:
            context = connection_context(conn.connection_id)
            old = self.wiring.vault.open_json(bytes(conn.credentials), context)
        server = login.server_url or str(old.get("principal_url") or "")
        if not server:
            raise InvalidRequest("send the server_url of the CardDAV account")
        username = login.username or str(old.get("username") or conn.provider_account_email or "")
        signed = self._carddav_sign_in(server, replace(login, username=username))
        result = self._signed_in_as(conn, signed)
        return {"connection": self.view(self._get(caller, conn.connection_id)), **result}

    def _carddav_sign_in(self, server_url: str, login: CardDavLogin) -> SignedIn:
        """The login checked against the server: what to fix when it does not work."""
        try:
            return self.wiring.carddav_sign_in(server_url, login.username, login.password)
        except ValueError as exc:
            raise InvalidRequest(str(exc), details={"field": "server_url"}) from exc
        except AuthExpired as exc:
            raise InvalidRequest(
                "the CardDAV server refused the username and password: sign in with an "
                "app-specific password (iCloud requires one), not the account's own password",
                details={"field": "password"},
            ) from exc
        except NotFound as exc:
            raise InvalidRequest(
                f"{exc.message}: check the server URL", details={"field": "server_url"}
            ) from exc
        except Transient as exc:
            if exc.status is None:  # never answered: a wrong host, most likely
                raise InvalidRequest(
                    f"could not reach {server_url}: check the server URL",
                    details={"field": "server_url"},
                ) from exc
            raise UpstreamError(f"the CardDAV server did not answer: {exc.message}") from exc
        except ProviderError as exc:
            raise UpstreamError(f"the CardDAV server did not answer: {exc.message}") from exc

    def _sign_in(self, provider: str, connection_id: str) -> tuple[str, bytes]:
        state = f"{connection_id}.{secrets.token_urlsafe(24)}"
        try:
            url, flow = self.wiring.start_sign_in(provider, state)
        except ValueError as exc:
            raise UpstreamError(f"could not start the sign-in: {exc}") from exc
        return url, self.wiring.vault.seal_json(flow, sign_in_context(connection_id))

    def finish_authorization(
        self, provider: str, query: dict[str, str], caller: Caller
    ) -> dict[str, Any]:
        """Attach the account the provider signed in to the connection whose sign-in this is,
        only for the user who started it: anyone else's completion attaches nothing."""
        if provider == "pipedrive":
            return self.finish_crm_authorization(query, caller)
        if provider not in PROVIDERS:
            raise NotFoundError(f"unknown provider {provider!r}")
        state = query.get("state", "")
        connection_id = state.split(".", 1)[0]
        conn = repo.get_connection(connection_id) if connection_id else None
        if conn is None or conn.oauth_state is None or conn.provider != provider:
            raise InvalidRequest("no sign-in is in progress for this state")
        if (conn.company_id, conn.user_id) != (caller.company_id, caller.user_id):
            raise NotFoundError("no sign-in of yours is in progress for this state")
        flow = self.wiring.vault.open_json(bytes(conn.oauth_state), sign_in_context(connection_id))
        if not secrets.compare_digest(str(flow.get("state", "")), state):
            raise InvalidRequest("the state parameter does not match the sign-in in progress")
        try:
            signed = self.wiring.finish_sign_in(provider, flow, query)
        except (ValueError, AuthExpired) as exc:
            raise InvalidRequest(f"the sign-in did not complete: {exc}") from exc
        except ProviderError as exc:
            raise UpstreamError(f"the provider did not answer: {exc.message}") from exc
        return self._signed_in_as(conn, signed)

    def _signed_in_as(self, conn: Any, signed: SignedIn) -> dict[str, Any]:
        """Keep a finished sign-in: the same account keeps its links (and a connection waiting
        for it resumes with a full re-listing); another account starts clean."""
        connection_id, provider = conn.connection_id, conn.provider
        context = connection_context(connection_id)
        same_account = conn.provider_account_id in (None, signed.account_id)
        changes: dict[str, Any] = {
            "credentials": self.wiring.vault.seal_json(signed.secrets, context),
            "oauth_state": None,
            "provider_account_id": signed.account_id,
            "provider_account_email": signed.username,
        }
        if not same_account:
            # Another account: its contacts have nothing to do with the old links.
            if conn.state in RUNNING_STATES:
                self._unsubscribe(conn)
            repo.forget_sync_state(connection_id)
            changes.update(folder_id=None, folder_name=None, state="configuring", next_run_at=None)
        elif conn.state == "needs_reauth":
            changes.update(state="active", last_error=None, next_run_at=self.clock())
        if provider == "google" and not (same_account and conn.folder_id):
            changes.update(folder_id=GOOGLE_DEFAULT_GROUP[0], folder_name=GOOGLE_DEFAULT_GROUP[1])
        repo.update_connection(connection_id, **changes)
        if conn.state == "needs_reauth" and same_account:
            # A full re-listing: CRM deletions announced while the sign-in was broken were
            # skipped, and only a full listing can find them again.
            self.queue.send([SyncMessage(connection_id=connection_id, reason="resync", full=True)])
        return {
            "connected": provider,
            "connection_id": connection_id,
            "account": signed.username,
            "same_account": same_account,
        }

    def list_for(self, caller: Caller) -> list[dict[str, Any]]:
        user = None if caller.is_admin else caller.user_id
        return [self.view(c) for c in repo.list_connections(caller.company_id, user)]

    def get(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        return self.view(self._get(caller, connection_id))

    def groups(self, caller: Caller, connection_id: str) -> list[dict[str, str]]:
        conn = self._signed_in(caller, connection_id)
        try:
            folders = self.wiring.list_groups(conn.connection_id, conn.provider)
        except AuthExpired as exc:
            raise ConflictError(f"sign in again: {exc.message}") from exc
        except ProviderError as exc:
            raise UpstreamError(f"the provider did not answer: {exc.message}") from exc
        return [{"id": folder_id, "name": name} for folder_id, name in folders]

    def create_group(self, caller: Caller, connection_id: str, name: str) -> dict[str, str]:
        """A new folder or group in the account, made for the sync, to choose next."""
        conn = self._signed_in(caller, connection_id)
        name = name.strip()
        if not name:
            raise InvalidRequest("give the new folder or group a name")
        existing = {n.casefold() for _, n in self._provider_call(
            lambda: self.wiring.list_groups(connection_id, conn.provider))}  # fmt: skip
        if name.casefold() in existing:
            raise ConflictError(f"{name!r} exists already: choose it from the list")
        group_id, group_name = self._provider_call(
            lambda: self.wiring.create_group(connection_id, conn.provider, name)
        )
        return {"id": group_id, "name": group_name}

    @staticmethod
    def _provider_call(call: Callable[[], T]) -> T:
        try:
            return call()
        except AuthExpired as exc:
            raise ConflictError(f"sign in again: {exc.message}") from exc
        except ProviderError as exc:
            raise UpstreamError(f"the provider did not answer: {exc.message}") from exc

    def update_settings(
        self, caller: Caller, connection_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        conn = self._get(caller, connection_id)
        update: dict[str, Any] = {}
        if "direction" in changes and changes["direction"] is not None:
            update["direction"] = _one_of("direction", changes["direction"], DIRECTIONS)
        if "conflict_policy" in changes and changes["conflict_policy"] is not None:
            update["conflict_policy"] = _one_of(
                "conflict_policy", changes["conflict_policy"], CONFLICT_POLICIES
            )
        if changes.get("phone_region") is not None:
            region = str(changes["phone_region"]).upper()
            if region not in phonenumbers.SUPPORTED_REGIONS:
                raise InvalidRequest(
                    f"phone_region {changes['phone_region']!r} is not a known region",
                    details={"example": "US, GB, DE"},
                )
            update["phone_region"] = region
        if changes.get("visibility") is not None:
            chosen = _one_of("visibility", changes["visibility"], tuple(VISIBILITIES))
            update["visible_to"] = VISIBILITIES[chosen]
        folder_id = changes.get("folder_id")
        if folder_id is not None:
            if conn.state in RUNNING_STATES and folder_id != conn.folder_id:
                raise ConflictError("stop the sync before choosing another folder")
            folders = {f["id"]: f["name"] for f in self.groups(caller, connection_id)}
            if folder_id not in folders:
                raise InvalidRequest(
                    f"folder {folder_id!r} does not exist in this account",
                    details={"allowed": [{"id": k, "name": v} for k, v in folders.items()]},
                )
            update.update(folder_id=folder_id, folder_name=folders[folder_id])
        if update:
            repo.update_connection(connection_id, **update)
        return self.get(caller, connection_id)

    def start(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        conn = self._signed_in(caller, connection_id)
        if not conn.folder_id:
            raise ConflictError("choose a contact folder or group before starting the sync")
        if conn.state in RUNNING_STATES:
            return self.view(conn)
        crm = self.wiring.crm_side(conn.company_id, conn.user_id)
        try:
            missing = crm.missing_permissions()
        except AuthExpired as exc:
            raise ConflictError("connect the CRM account first") from exc
        except ProviderError as exc:
            raise UpstreamError(f"the CRM did not answer: {exc.message}") from exc
        if missing:
            raise ForbiddenError(
                "you need the CRM permission to " + " and to ".join(missing) + " to sync contacts",
                details={"missing_permissions": missing},
            )
        self._subscribe(conn, crm)
        repo.update_connection(
            connection_id,
            state="syncing_initial",
            last_error=None,
            progress={"phase": "listing", "done": 0, "total": 0},
            next_run_at=self.clock() + timedelta(minutes=5),
            poll_seconds=0,
        )
        self.queue.send([SyncMessage(connection_id=connection_id, reason="start", full=True)])
        return self.get(caller, connection_id)

    def resync(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        """Re-list both sides in full and re-match: heals anything a missed change left behind,
        and never duplicates (existing links are kept, new matches are linked)."""
        conn = self._signed_in(caller, connection_id)
        if conn.state == "needs_attention":
            raise ConflictError("a pass is waiting for confirmation: confirm or discard it first")
        if conn.state not in RUNNING_STATES:
            raise ConflictError(f"the sync is {conn.state}: start it first")
        self.queue.send([SyncMessage(connection_id=connection_id, reason="resync", full=True)])
        return self.view(conn)

    def stop(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        """Stop syncing: once this returns, nothing more is written to either side."""
        conn = self._get(caller, connection_id)
        repo.update_connection(connection_id, state="stopped", next_run_at=None)
        self._unsubscribe(conn)
        self._wait_for_running_pass(connection_id)
        return self.get(caller, connection_id)

    def _wait_for_running_pass(self, connection_id: str) -> None:
        """A pass that began before the stop checks the state before its next write; wait
        (a few seconds at most) until it has let go of the connection."""
        owner = f"stop-{uuid.uuid4().hex}"
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while not repo.acquire_lease(connection_id, owner, STOP_WAIT_SECONDS, self.clock()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        repo.release_lease(connection_id, owner)

    # --- push subscriptions ------------------------------------------------------------------

    def _subscribe(self, conn: Any, crm: Any) -> None:
        """CRM webhooks for every connection; Graph change notifications for Microsoft (Google
        has no contact push: its connections are polled)."""
        base = self.wiring.settings.public_base_url
        sub_ids: list[str] = []
        try:
            if conn.provider == "microsoft":
                sub_ids.append(subscribe(self.wiring, conn))
            password = secrets.token_urlsafe(32)
            hook_id = crm.create_webhook(
                url=f"{base}/webhooks/pipedrive", user=conn.connection_id, password=password
            )
        except ProviderError as exc:
            raise UpstreamError(f"could not subscribe to changes: {exc.message}") from exc
        repo.update_connection(
            conn.connection_id,
            subscription_ids=sub_ids,
            crm_webhook_ids=[hook_id],
            crm_webhook_secret_hash=secret_hash(password),
        )

    def _unsubscribe(self, conn: Any) -> None:
        if conn.provider == "microsoft" and conn.subscription_ids:
            account = self.wiring.microsoft_account(conn.connection_id)
            for sub_id in list(conn.subscription_ids or []):
                # If Graph will not answer, the subscription lapses on its own within three days.
                with contextlib.suppress(ProviderError):
                    account.delete_subscription(sub_id)
                repo.delete_subscription(sub_id)
        crm = self.wiring.crm_side(conn.company_id, conn.user_id)
        for hook_id in list(conn.crm_webhook_ids or []):
            with contextlib.suppress(ProviderError):
                crm.delete_webhook(hook_id)
        repo.update_connection(
            conn.connection_id,
            subscription_ids=[],
            crm_webhook_ids=[],
            crm_webhook_secret_hash=None,
        )

    # --- views -------------------------------------------------------------------------------

    def _get(self, caller: Caller, connection_id: str) -> Any:
        conn = repo.get_connection(connection_id)
        if conn is None or conn.company_id != caller.company_id:
            raise NotFoundError(f"no connection {connection_id!r}")
        if not caller.is_admin and conn.user_id != caller.user_id:
            raise NotFoundError(f"no connection {connection_id!r}")
        return conn

    def _signed_in(self, caller: Caller, connection_id: str) -> Any:
        conn = self._get(caller, connection_id)
        if conn.credentials is None:
            raise ConflictError("finish signing in to the provider first")
        return conn

    def view(self, conn: Any) -> dict[str, Any]:
        """A connection as the settings page shows it, with its live status."""
        now = self.clock()
        progress = dict(conn.progress.as_dict()) if conn.progress else {}
        eta = _eta_seconds(progress, now)
        if eta is not None:
            progress["eta_seconds"] = eta
        last_error = dict(conn.last_error.as_dict()) if conn.last_error else None
        taken = [c.taken_at for s in ("crm", "provider") if (c := repo.get_cursor(
            conn.connection_id, s)) is not None and c.taken_at]  # fmt: skip
        expiries = [sub.expires_at_iso for sub in repo.subscriptions_of(conn)]
        return {
            "id": conn.connection_id,
            "user_id": conn.user_id,
            "provider": conn.provider,
            "account": conn.provider_account_email,
            "state": conn.state,
            "direction": conn.direction,
            "folder": {"id": conn.folder_id, "name": conn.folder_name} if conn.folder_id else None,
            "conflict_policy": conn.conflict_policy,
            "phone_region": conn.phone_region,
            "visibility": _visibility_name(conn.visible_to),
            "progress": progress,
            "last_success_at": conn.last_success_at,
            "last_error": last_error,
            "held": conn.held_plan,
            "counts": dict(conn.counts.as_dict()) if conn.counts else {},
            "limits": list(conn.limits or []),
            "cursor_age_seconds": _age_seconds(min(taken), now) if taken else None,
            "subscription_expires_at": min(expiries) if expiries else None,
            "next_run_at": conn.next_run_at,
            "poll_seconds": int(conn.poll_seconds or 0),
            "created_at": conn.created_at,
            "updated_at": conn.updated_at,
        }


def _age_seconds(moment: str, now: datetime) -> int:
    return max(0, int((now - datetime.fromisoformat(moment)).total_seconds()))


def _eta_seconds(progress: dict[str, Any], now: datetime) -> int | None:
    """Time left in an initial sync, at the pace it has kept so far."""
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    started = progress.get("started_at")
    if progress.get("phase") != "writing" or not started or done <= 0 or total <= done:
        return None
    per_item = _age_seconds(str(started), now) / done
    return round(per_item * (total - done))


def _visibility_name(visible_to: Any) -> str | None:
    """The setting's name for a stored ``visible_to`` (None: the CRM's default applies)."""
    if visible_to is None:
        return None
    return next((k for k, v in VISIBILITIES.items() if v == int(visible_to)), None)


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequest(
            f"{name} must be one of {', '.join(allowed)}", details={"allowed": list(allowed)}
        )
    return str(value)
