"""Table 5: cold start of each function: a fresh interpreter imports the handler module and builds
its clients the way its first request would; median of 10, next to the floor (the same
measurement for only the third-party imports and clients that function truly needs).

The figure is the interpreter's CPU time (user + system) for that work: on a busy machine wall
time also measures the neighbours, and on Lambda, where a function has its own share of a vCPU,
the init phase lasts as long as its CPU work. A function's runs and its floor's alternate.

Every module is imported from bytecode, compiled before the timed runs into a cache of the
probes' own (so ``__pycache__`` folders and ``PYTHONDONTWRITEBYTECODE`` here change nothing):
the table measures what a cold start imports and runs, not compiling. The deployed layer carries
no bytecode that Lambda's Python 3.12 can use (see the layer table), so there a cold start also
compiles every module it imports.

Nothing here opens a connection: building a boto3/PynamoDB/httpx client is local work. Run
``python -X importtime -c "import functions.<name>.app"`` to see where a function's time goes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.report import Table, median, scaled, verdict
from bench.world import World

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10
FLOOR_FACTOR = 1.15
LIMITS_MS = {"webhooks": 400, "admin_api": 700, "reconciler": 700, "scheduler": 700}

TABLE_CLIENT = (
    "from contactsync.store import models; models.Connection._get_connection().connection.client"
)

# What the first request builds, after the module import. A pass builds the CRM side and its
# provider's (here Microsoft's).
SIDES_BUILT = (
    "w = build_passes().wiring; w.crm_side('7', '1'); w.provider_side('c', 'microsoft', '')"
)
BUILD = {
    "admin_api": f"from functions.admin_api.context import service; service(); {TABLE_CLIENT}",
    "webhooks": "from contactsync.runtime.wiring import bind_store, build_queue; bind_store(); "
    f"build_queue(); {TABLE_CLIENT}",
    "reconciler": f"from contactsync.runtime.wiring import build_passes; {SIDES_BUILT}; {TABLE_CLIENT}",  # noqa: E501
    "scheduler": "from contactsync.runtime.wiring import bind_store, build_queue; bind_store(); "
    f"build_queue(); {TABLE_CLIENT}",
}

_PYNAMODB = (
    "import pynamodb.models, pynamodb.attributes, pynamodb.indexes; "
    "pynamodb.connection.Connection(region='us-east-1').client"
)
_SQS = "import boto3; boto3.client('sqs')"
_KMS = "boto3.client('kms')"
_LOGGER = "from aws_lambda_powertools import Logger, Metrics; Logger(service='x'); "
_PYDANTIC = "import pydantic; pydantic.create_model('Message', id=(str, ''))"  # a model, built

# The floor: only the third-party libraries each function needs on its usual request, and the
# clients it builds. msal is left out everywhere: it is needed only to refresh a Microsoft token
# or to sign a user in, not to start.
FLOOR = {
    "admin_api": _LOGGER
    + "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver; "
    f"APIGatewayHttpResolver(enable_validation=True); {_PYDANTIC}; import httpx; "
    "import aws_lambda_powertools.event_handler.openapi.models; "  # validation needs them
    "import cryptography.hazmat.primitives.ciphers.aead; "
    f"{_PYNAMODB}; {_SQS}; {_KMS}; httpx.Client()",
    "webhooks": _LOGGER + "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver; "
    f"APIGatewayHttpResolver(); {_PYDANTIC}; {_PYNAMODB}; {_SQS}",
    "reconciler": _LOGGER
    + "from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor; "
    f"SqsFifoPartialProcessor(); {_PYDANTIC}; import httpx, phonenumbers; "
    "import cryptography.hazmat.primitives.ciphers.aead; "
    f"{_PYNAMODB}; {_SQS}; {_KMS}; httpx.Client()",
    "scheduler": _LOGGER + f"{_PYDANTIC}; {_PYNAMODB}; {_SQS}",
}

PROBE = """
import json, time
started = time.process_time()
{body}
took = time.process_time() - started
rss = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]
print(json.dumps({{"ms": took * 1000, "rss_mb": int(rss) / 1024}}))
"""


def _environment(bytecode: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_ENDPOINT_URL") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "core")]),
            "PYTHONPYCACHEPREFIX": str(bytecode),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "cold",
            "AWS_SECRET_ACCESS_KEY": "cold",
            "TABLE_NAME": "contactsync-cold",
            "SYNC_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/sync.fifo",
            "TOKEN_KEY_ID": "alias/contactsync-cold",
            "POWERTOOLS_SERVICE_NAME": "contactsync",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    return env


def _figures(body: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603 - our own interpreter running our own probe
        [sys.executable, "-c", PROBE.format(body=body)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def probe(bodies: list[str], runs: int) -> list[tuple[float, float]]:
    """Median CPU milliseconds and median RSS (MB) of each body in ``runs`` fresh interpreters
    each, the bodies taking turns after an untimed run that compiles their bytecode."""
    bytecode = Path(tempfile.mkdtemp(prefix="coldstart-bytecode-"))
    env = _environment(bytecode)
    times: list[list[float]] = [[] for _ in bodies]
    rss: list[list[float]] = [[] for _ in bodies]
    try:
        for body in bodies:
            _figures(body, env)
        for _ in range(runs):
            for i, body in enumerate(bodies):
                figures = _figures(body, env)
                times[i].append(figures["ms"])
                rss[i].append(figures["rss_mb"])
    finally:
        shutil.rmtree(bytecode, ignore_errors=True)
    return [(median(t), median(r)) for t, r in zip(times, rss, strict=True)]


def run(world: World) -> Table:
    runs = scaled(RUNS, minimum=3)
    table = Table(
        "coldstart",
        f"5. Cold start: import the handler and build its clients (CPU ms, median of {runs})",
        ["function", "ms", "RSS", "floor ms", "floor RSS", "x floor", "target", "met"],
    )
    for name, build in BUILD.items():
        function_body = f"import functions.{name}.app as m; {build}"
        [(function_ms, function_rss), (floor_ms, floor_rss)] = probe(
            [function_body, FLOOR[name]], runs
        )
        factor = function_ms / max(floor_ms, 1e-9)
        limit = LIMITS_MS[name]
        table.add(
            name,
            f"{function_ms:,.0f}",
            f"{function_rss:,.0f} MB",
            f"{floor_ms:,.0f}",
            f"{floor_rss:,.0f} MB",
            f"{factor:.2f}",
            f"≤ {FLOOR_FACTOR} x floor, ≤ {limit} ms",
            verdict(factor <= FLOOR_FACTOR and function_ms <= limit),
        )
        table.figures[name] = {"ms": function_ms, "rss": function_rss, "floor_ms": floor_ms}
    table.note(
        "floors: Powertools (resolver / batch processor) + Logger, pydantic (one model built), "
        "PynamoDB with its "
        "client, boto3 SQS client; + httpx, cryptography, KMS client for admin_api and "
        "reconciler, + phonenumbers for the reconciler, + the OpenAPI models request validation "
        "uses for admin_api. msal is in no floor: it loads when a Microsoft sign-in or token "
        "first needs it. The reconciler's build includes a CRM side and a Microsoft side, as a "
        "pass builds them (the adapters load where a side is built). Tracing is off here, as on "
        "the local stack; where X-Ray tracing is on (the template's Tracing: Active) each "
        "function also makes Powertools' Tracer, which imports the X-Ray SDK (in no floor)."
    )
    return table
