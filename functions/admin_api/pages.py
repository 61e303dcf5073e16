"""Routes: the settings page, the public status page and the OAuth landing page, served as
static files from ``pages/`` on the API's own origin (not part of the API's document)."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from .bodies import ProviderName
from .errors import error_response

router = APIGatewayHttpRouter()

PAGES = FilePath(__file__).resolve().parent / "pages"
PAGE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
PAGE_HEADERS = {
    # Nothing but our own files runs or loads; no framing; the callback URL (it carries the
    # provider's one-time code) is never sent on as a referrer.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
AssetName = Annotated[str, Path(max_length=64, pattern=r"^[a-z-]+\.(js|css)$")]


def page(name: str) -> Response[str]:
    """One of the files in ``pages/``, with the headers every page carries."""
    path = PAGES / name
    if not path.is_file():
        return error_response(404, "not_found", f"no page {name!r}")
    return Response(
        status_code=200,
        content_type=PAGE_TYPES[path.suffix],
        body=path.read_text(encoding="utf-8"),
        headers=dict(PAGE_HEADERS),
    )


@router.get("/oauth/<provider>/callback", include_in_schema=False)
def oauth_landing(provider: ProviderName) -> Response[str]:
    """Where the provider sends the browser back: a page of the settings UI that finishes the
    sign-in with the signed-in user's own credentials (this GET alone attaches nothing)."""
    return page("signed-in.html")


@router.get("/settings", include_in_schema=False)
def settings_page() -> Response[str]:
    return page("settings.html")


@router.get("/status-page", include_in_schema=False)
def status_page() -> Response[str]:
    return page("status.html")


@router.get("/assets/<name>", include_in_schema=False)
def asset(name: AssetName) -> Response[str]:
    return page(name)
