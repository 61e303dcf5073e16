"""The API as API Gateway (HTTP API, payload format 2.0) would serve it, on loopback.

Routes come from template.yaml's HttpApi events, so what runs locally is what is deployed. Routes
behind the JWT authorizer get their bearer token checked here as the authorizer would (issuer,
audience, signature, expiry) and the claims passed on in ``requestContext.authorizer.jwt``.

Lambda gives an execution environment one event at a time, and the handlers rely on it: a
Powertools resolver keeps the request it is answering on the (module-wide) app. Here each
function is one warm environment, so its invocations take turns; different functions run side by
side.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.aws import load_template
from local.lambda_runtime import LambdaContext, handler_for

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ApiRoute:
    method: str  # "GET", ... or "ANY"
    path: str  # "/connections/{id}" or "/{proxy+}"
    function: str  # logical id
    authorized: bool  # behind the JWT authorizer
    pattern: re.Pattern[str]

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def specificity(self) -> tuple[int, int, int]:
        greedy = "+}" in self.path
        params = self.path.count("{")
        return (1 if greedy else 0, params, -len(self.path))


@dataclass(frozen=True)
class JwtCheck:
    """What the template's JWT authorizer checks, with the key the local issuer signs with."""

    issuer: str
    audience: str
    public_key: Any


def routes_from_template(template_path: Path | None = None) -> list[ApiRoute]:
    template = load_template(template_path or ROOT / "template.yaml")
    default_authorized = True
    routes: list[ApiRoute] = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties", {})
            path = props["Path"]
            auth = (props.get("Auth") or {}).get("Authorizer")
            authorized = default_authorized if auth is None else auth != "NONE"
            routes.append(
                ApiRoute(
                    method=str(props.get("Method", "ANY")).upper(),
                    path=path,
                    function=logical_id,
                    authorized=authorized,
                    pattern=_compile(path),
                )
            )
    return sorted(routes, key=lambda r: r.specificity())


def _compile(path: str) -> re.Pattern[str]:
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("+}"):
            regex += f"(?P<{part[1:-2]}>.+)"
        elif part.startswith("{"):
            regex += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^{regex}$")


def build_gateway(
    jwt_check: JwtCheck,
    *,
    routes: list[ApiRoute] | None = None,
    handlers: dict[str, Callable[[dict[str, Any], Any], Any]] | None = None,
    local_routes: list[Route] | None = None,
) -> Starlette:
    """The gateway; ``local_routes`` (the local sign-in page) are served before the API's."""
    table = routes if routes is not None else routes_from_template()
    handlers = handlers or {}
    # Lambda gives an execution environment one event at a time (the resolver keeps the request
    # it answers); different functions answer side by side (an admin request that subscribes to
    # Graph waits for the webhook function to answer Graph's validation request).
    turns: dict[str, threading.Lock] = {route.function: threading.Lock() for route in table}

    def one_at_a_time(function: str, event: dict[str, Any], context: LambdaContext) -> Any:
        handler = handlers.get(function) or handler_for(function)
        with turns[function]:
            return handler(event, context)

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        for route in table:
            if route.method not in ("ANY", request.method):
                continue
            match = route.pattern.match(path)
            if match is None:
                continue
            claims: dict[str, Any] | None = None
            if route.authorized:
                claims = _authorize(request, jwt_check)
                if claims is None:
                    return JSONResponse({"message": "Unauthorized"}, status_code=401)
            body = await request.body()
            event = _event(request, route, match.groupdict(), body, claims)
            context = LambdaContext(function_name=route.function)
            try:
                result = await run_in_threadpool(one_at_a_time, route.function, event, context)
            except Exception:
                # A crashed invocation: API Gateway answers 500; the traceback goes to the log.
                traceback.print_exc()
                return JSONResponse({"message": "Internal Server Error"}, status_code=500)
            return _response(result)
        return JSONResponse({"message": "Not Found"}, status_code=404)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(
        routes=[*(local_routes or []), Route("/{path:path}", dispatch, methods=methods)]
    )


def _authorize(request: Request, check: JwtCheck) -> dict[str, Any] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    token = header[7:].strip()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            check.public_key,
            algorithms=["RS256"],
            audience=check.audience,
            issuer=check.issuer,
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError:
        return None
    return claims


def _event(
    request: Request,
    route: ApiRoute,
    path_params: dict[str, str],
    body: bytes,
    claims: dict[str, Any] | None,
) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in request.headers.items()}
    query: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        query[key] = f"{query[key]},{value}" if key in query else value
    try:
        text = body.decode("utf-8")
        is_b64 = False
    except UnicodeDecodeError:
        text = base64.b64encode(body).decode()
        is_b64 = True
    now = time.time()
    context: dict[str, Any] = {
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": request.url.hostname or "127.0.0.1",
        "domainPrefix": "local",
        "http": {
            "method": request.method,
            "path": request.url.path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.client.host if request.client else "127.0.0.1",
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route.route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        scopes = str(claims.get("scope", "")).split() or None
        context["authorizer"] = {
            "jwt": {"claims": {k: _claim(v) for k, v in claims.items()}, "scopes": scopes}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.url.path,
        "rawQueryString": request.url.query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": is_b64,
    }
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    if body:
        event["body"] = text
    return event


def _claim(value: Any) -> str:
    """API Gateway passes every claim as a string (lists as "[a b]")."""
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def _response(result: Any) -> Response:
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload 2.0 lets a function return a bare JSON value: API Gateway wraps it in a 200.
        import json  # noqa: PLC0415

        return Response(json.dumps(result), status_code=200, media_type="application/json")
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    headers = dict(result.get("headers") or {})
    response = Response(raw, status_code=int(result["statusCode"]), headers=headers)
    for cookie in result.get("cookies") or []:
        response.headers.append("set-cookie", cookie)
    return response
