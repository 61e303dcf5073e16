"""Meters a measured process attaches: what the store asks of DynamoDB, and where it points.

``DynamoMeter`` counts what the store really asks of DynamoDB: it hooks botocore's
``before-call`` / ``after-call`` events on the clients PynamoDB uses (PynamoDB already asks for
``ReturnConsumedCapacity=TOTAL``, and DynamoDB Local answers with it, indexes included).
Imports nothing but the core, so a child process measuring the reconciler stays lean.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from contactsync.store import models

READ_OPERATIONS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


@dataclass
class DynamoCounts:
    calls: Counter[str] = field(default_factory=Counter)  # operation -> number of calls
    read_units: float = 0.0
    write_units: float = 0.0
    items_read: int = 0
    seconds: float = 0.0  # time spent waiting for DynamoDB
    op_seconds: Counter[str] = field(default_factory=Counter)  # operation -> seconds

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def minus(self, earlier: DynamoCounts) -> DynamoCounts:
        return DynamoCounts(
            calls=self.calls - earlier.calls,
            read_units=self.read_units - earlier.read_units,
            write_units=self.write_units - earlier.write_units,
            items_read=self.items_read - earlier.items_read,
            seconds=self.seconds - earlier.seconds,
            op_seconds=self.op_seconds - earlier.op_seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "read_units": self.read_units,
            "write_units": self.write_units,
            "items_read": self.items_read,
            "seconds": self.seconds,
            "op_seconds": dict(self.op_seconds),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynamoCounts:
        return cls(
            calls=Counter(data["calls"]),
            read_units=data["read_units"],
            write_units=data["write_units"],
            items_read=data["items_read"],
            seconds=data["seconds"],
            op_seconds=Counter(data.get("op_seconds", {})),
        )


def _capacity(parsed: dict[str, Any]) -> float:
    consumed = parsed.get("ConsumedCapacity")
    entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
    return float(sum(e.get("CapacityUnits", 0.0) for e in entries))


def _items_read(operation: str, parsed: dict[str, Any]) -> int:
    if operation == "GetItem":
        return 1 if parsed.get("Item") else 0
    if operation in ("Query", "Scan"):
        return int(parsed.get("ScannedCount", parsed.get("Count", 0)))
    if operation == "BatchGetItem":
        return sum(len(items) for items in (parsed.get("Responses") or {}).values())
    return 0


class DynamoMeter:
    """Counts calls, consumed read/write units, items read and waiting time of the store."""

    def __init__(self) -> None:
        self.counts = DynamoCounts()
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._hooked: set[int] = set()

    def attach(self) -> DynamoMeter:
        """Hook every model's client (call again after ``models.configure``: new clients)."""
        for model in models.MODELS:
            client = model._get_connection().connection.client
            if id(client) in self._hooked:
                continue
            self._hooked.add(id(client))
            client.meta.events.register("before-call.dynamodb", self._before)
            client.meta.events.register("after-call.dynamodb", self._after)
        return self

    def snapshot(self) -> DynamoCounts:
        with self._lock:
            c = self.counts
            return DynamoCounts(
                Counter(c.calls),
                c.read_units,
                c.write_units,
                c.items_read,
                c.seconds,
                Counter(c.op_seconds),
            )

    def _before(self, **_: Any) -> None:
        self._started[threading.get_ident()] = time.perf_counter()

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        took = time.perf_counter() - self._started.pop(threading.get_ident(), time.perf_counter())
        operation = str(model.name)
        with self._lock:
            self.counts.calls[operation] += 1
            self.counts.seconds += took
            self.counts.op_seconds[operation] += took
            units = _capacity(parsed)
            if operation in READ_OPERATIONS:
                self.counts.read_units += units
            else:
                self.counts.write_units += units
            self.counts.items_read += _items_read(operation, parsed)


def point_store_at(table_name: str, aws_env: dict[str, str]) -> None:
    """Point the process (environment and PynamoDB models) at ``table_name`` on the local stack."""
    os.environ.update(aws_env)
    os.environ["TABLE_NAME"] = table_name
    models.configure(table_name, aws_env["DYNAMODB_ENDPOINT_URL"], aws_env["AWS_REGION"])
