"""The whole service on this machine: AWS emulators, provider sandboxes, the API and the workers.

``start_stack()`` is what ``make run`` and the end-to-end tests use. Everything listens on
127.0.0.1, on ports the OS picks (the API on 3000 for ``make run``), and ``stop()`` ends it all.
The Lambda handlers run in this process, invoked as AWS would invoke them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.aws import LocalAws, start_local_aws
from local.carddav import RunningCardDav, start_radicale
from local.event_sources import QueuePoller, ScheduleTicker
from local.gateway import build_gateway
from local.issuer import LocalIssuer
from local.lambda_runtime import handler_for
from local.sign_in import SIGN_IN_PATH, sign_in_routes
from sandbox.google import RunningGoogle, start_google_sandbox
from sandbox.graph.running import RunningGraph, start_graph_sandbox
from sandbox.pipedrive import RunningPipedrive, start_pipedrive_sandbox
from sandbox.server import RunningServer, free_port, start

CARDDAV_USER = "dana"  # the demo user's account on the local CardDAV server


@dataclass
class LocalStack:
    aws: LocalAws
    graph: RunningGraph
    google: RunningGoogle
    pipedrive: RunningPipedrive
    carddav: RunningCardDav  # a real CardDAV server (Radicale, with authentication)
    issuer: LocalIssuer
    api: RunningServer
    poller: QueuePoller
    ticker: ScheduleTicker
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.api.url

    def token(self, user_id: int | str, company_id: int | str, *, role: str = "user") -> str:
        return self.issuer.token(user_id=str(user_id), company_id=str(company_id), role=role)

    def stop(self, *, within: float | None = None) -> None:
        """Stop every part, side by side. ``within`` seconds (Ctrl-C on ``make run``): whatever is
        still busy then (a pass mid-write, a slow client) is left to the process's exit; the AWS
        resources are always removed."""
        parts = (
            self.ticker, self.poller, self.api, self.graph, self.google, self.pipedrive,
            self.carddav,
        )  # fmt: skip
        stopping = [
            threading.Thread(target=_stop_quietly, args=(part,), daemon=True) for part in parts
        ]
        for thread in stopping:
            thread.start()
        deadline = None if within is None else time.monotonic() + within
        for thread in stopping:
            thread.join(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.aws.stop()


def _stop_quietly(part: Any) -> None:
    try:
        part.stop()
    except Exception:  # stopping everything matters more than one failure
        return


def _reset_cached_wiring() -> None:
    """Handlers build their clients once per cold start: a new stack is a new cold start."""
    from contactsync.runtime import settings, wiring  # noqa: PLC0415

    settings.get_settings.cache_clear()
    for builder in (
        wiring.bind_store,
        wiring.build_queue,
        wiring.build_wiring,
        wiring.build_passes,
        wiring.webhook_key,
    ):
        builder.cache_clear()
    from functions.admin_api import context as admin_context  # noqa: PLC0415

    admin_context.service.cache_clear()


def start_stack(
    *,
    api_port: int | None = None,
    workdir: Path | None = None,
    schedule_every: float = 60.0,
    pass_budget_seconds: float = 20.0,
    change_settle_seconds: float = 1.0,
    extra_env: dict[str, str] | None = None,
    reconciler_timeout: float | None = None,
    reconciler_concurrency: int = 1,
) -> LocalStack:
    """The whole service on loopback. ``reconciler_timeout`` replaces the template's Timeout of
    the reconciler (a test of the timeout in seconds rather than minutes); the sync queue's
    visibility timeout is then six times it, as the template keeps it."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="contactsync-stack-"))
    workdir.mkdir(parents=True, exist_ok=True)
    aws = start_local_aws()
    graph = google = pipedrive = carddav = None
    try:
        graph = start_graph_sandbox(workdir / "graph")
        google = start_google_sandbox()
        pipedrive = start_pipedrive_sandbox()
        # A fresh server per stack; the demo user's app-specific password is made up here.
        shutil.rmtree(workdir / "carddav", ignore_errors=True)
        carddav = start_radicale(workdir / "carddav", {CARDDAV_USER: secrets.token_urlsafe(12)})
        port = api_port or free_port()
        env = {
            **aws.env(),
            "STAGE": "local",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "MICROSOFT_CLIENT_ID": graph.client_id,
            "MICROSOFT_CLIENT_SECRET": graph.client_secret,
            "MICROSOFT_AUTHORITY": graph.authority,
            "MICROSOFT_CA_BUNDLE": graph.ca_bundle,
            "GRAPH_BASE_URL": graph.graph_url,
            "GOOGLE_CLIENT_ID": google.client_id,
            "GOOGLE_CLIENT_SECRET": google.client_secret,
            "GOOGLE_AUTH_URL": google.authorize_url,
            "GOOGLE_TOKEN_URL": google.token_url,
            "GOOGLE_PEOPLE_BASE_URL": google.people_url,
            # The sandbox shows writes in sync listings 2 s late (8 s under a chaos fault).
            "GOOGLE_LISTING_LAG_SECONDS": "10",
            "CARDDAV_ALLOW_HTTP": "true",  # the local server is plain http on loopback
            "PIPEDRIVE_BASE_URL": pipedrive.url,
            "PIPEDRIVE_OAUTH_URL": pipedrive.url,
            "PIPEDRIVE_CLIENT_ID": pipedrive.client_id,
            "PIPEDRIVE_CLIENT_SECRET": pipedrive.client_secret,
            "WEBHOOK_KEY": secrets.token_urlsafe(32),
            "PASS_BUDGET_SECONDS": str(pass_budget_seconds),
            "CHANGE_SETTLE_SECONDS": str(change_settle_seconds),
            # Health counted at every pass, so the status page and its tests see it at once.
            "HEALTH_FLUSH_SECONDS": "0",
            "POWERTOOLS_SERVICE_NAME": "contactsync",
            "POWERTOOLS_METRICS_NAMESPACE": "contactsync",
            "POWERTOOLS_TRACE_DISABLED": "true",
            # EMF goes to stdout, where CloudWatch picks it up; locally it would only be noise
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            **(extra_env or {}),
        }
        os.environ.update(env)
        _reset_cached_wiring()
        issuer = LocalIssuer()
        gateway = build_gateway(
            issuer.check, local_routes=sign_in_routes(issuer, pipedrive.sandbox)
        )
        api = start(gateway, port=port)
        sqs = aws.client("sqs")
        if reconciler_timeout is not None:
            visibility = str(max(1, round(6 * reconciler_timeout)))
            sqs.set_queue_attributes(
                QueueUrl=aws.queue_url, Attributes={"VisibilityTimeout": visibility}
            )
        reconciler = handler_for("ReconcilerFunction", timeout_seconds=reconciler_timeout)
        poller = QueuePoller(
            sqs, aws.queue_url, reconciler, concurrency=reconciler_concurrency
        ).start()
        ticker = ScheduleTicker(
            handler_for("SchedulerFunction"), every_seconds=schedule_every
        ).start()
    except BaseException:
        for part in (graph, google, pipedrive, carddav):
            if part is not None:
                part.stop()
        aws.stop()
        raise
    return LocalStack(
        aws=aws,
        graph=graph,
        google=google,
        pipedrive=pipedrive,
        carddav=carddav,
        issuer=issuer,
        api=api,
        poller=poller,
        ticker=ticker,
        workdir=workdir,
        env=env,
    )


def describe(
    stack: LocalStack, tokens: dict[str, str], *, demo_user_id: int | str | None = None
) -> dict[str, Any]:
    """What ``.local/stack.json`` holds for scripts and people driving the running stack."""
    sign_in = f"{stack.api_url}{SIGN_IN_PATH}"
    return {
        "api": stack.api_url,
        # Opening it signs the demo user in (local stack only); sign_in picks anyone seeded.
        "settings_page": f"{sign_in}?user={demo_user_id}" if demo_user_id else sign_in,
        "sign_in": sign_in,
        "status_page": f"{stack.api_url}/status-page",
        "openapi": f"{stack.api_url}/openapi.json",
        "docs": f"{stack.api_url}/docs",
        "sandboxes": {
            "pipedrive": stack.pipedrive.url,
            "pipedrive_control": f"{stack.pipedrive.url}/_sandbox",
            "graph": stack.graph.graph_url,
            "graph_control": stack.graph.control_url,
            "microsoft_identity": stack.graph.authority,
            "microsoft_identity_ca_file": stack.graph.ca_file,
            "google": stack.google.people_url,
            "google_control": stack.google.control_url,
        },
        "carddav": {
            "server": stack.carddav.url,
            "username": CARDDAV_USER,
            "password": stack.carddav.users[CARDDAV_USER],
        },
        "aws": {
            "dynamodb": stack.aws.dynamodb_url,
            "sqs_kms": stack.aws.moto_url,
            "table": stack.aws.table_name,
            "queue": stack.aws.queue_url,
        },
        "tokens": tokens,
    }
