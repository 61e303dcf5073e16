"""Scheduled connections generated in bulk, whatever items the store makes of one.

The store's own functions make one template connection in an empty table (``create_connection``,
sealed tokens through ``update_connection``, ``set_next_run``); its items are read back raw and
copied with ``BatchWriteItem``, 25 a call from a few threads, each copy with its own connection
id, owner, DueIndex shard (``due_shard``) and next run written where the template had its own.
So the copies are what the store would have written, item for item, indexes included, without a
conditional write per connection, and they follow the store when its item layout changes.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import boto3
from contactsync.store.connections import (
    create_connection,
    due_shard,
    set_next_run,
    update_connection,
)
from contactsync.store.models import iso

THREADS = 4
BATCH = 25  # BatchWriteItem takes at most 25 items
TOKEN_BLOB = 1_500  # bytes of sealed credentials a real connection item carries
# What the template is made with; each is replaced in every string of its items.
_ID = "tpl0connection0id0000000000000000"
_COMPANY = "tplcompany"
_USER = "tpluser"
_NEXT = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)


def _client() -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=os.environ["DYNAMODB_ENDPOINT_URL"],
        region_name=os.environ["AWS_REGION"],
    )


def template(*, tokens: bool) -> list[dict[str, Any]]:
    """The raw items of one scheduled connection, as the store writes them (the table must be
    empty: everything in it is taken for the template). The template itself is deleted."""
    create_connection(
        company_id=_COMPANY,
        user_id=_USER,
        provider="microsoft",
        connection_id=_ID,
        state="active",
        folder_id="folder",
    )
    if tokens:
        update_connection(_ID, credentials=random.Random(7).randbytes(TOKEN_BLOB))
    set_next_run(_ID, _NEXT)
    client = _client()
    table = os.environ["TABLE_NAME"]
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items += page["Items"]
    schema = client.describe_table(TableName=table)["Table"]["KeySchema"]
    keys = [k["AttributeName"] for k in schema]
    for item in items:
        client.delete_item(TableName=table, Key={k: item[k] for k in keys})
    return items


def _replace(value: Any, swaps: Sequence[tuple[str, str]]) -> Any:
    """``value`` (a DynamoDB attribute value) with every template token swapped in its strings."""
    if "S" in value:
        text = value["S"]
        for old, new in swaps:
            text = text.replace(old, new)
        return {"S": text}
    if "M" in value:
        return {"M": {k: _replace(v, swaps) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [_replace(v, swaps) for v in value["L"]]}
    if "SS" in value:
        return {"SS": [_replace({"S": v}, swaps)["S"] for v in value["SS"]]}
    return value


def copies(
    items: list[dict[str, Any]], schedule: Iterator[tuple[str, datetime]]
) -> Iterator[dict[str, Any]]:
    """The template's items for each (connection id, next run) of ``schedule``."""
    template_shard = due_shard(_ID)
    for cid, at in schedule:
        swaps = (
            (_ID, cid),
            (template_shard, due_shard(cid)),
            (iso(_NEXT), iso(at)),
            (_COMPANY, f"co{cid[:6]}"),
            (_USER, f"u{cid[6:12]}"),
        )
        for item in items:
            yield {k: _replace(v, swaps) for k, v in item.items()}


def _write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    requests = [{"PutRequest": {"Item": item}} for item in items]
    while requests:
        answer = client.batch_write_item(RequestItems={table: requests})
        requests = answer.get("UnprocessedItems", {}).get(table, [])


def write(items: Iterator[dict[str, Any]]) -> int:
    """Put ``items`` with BatchWriteItem, 25 a call, from THREADS threads; the number written."""
    client = _client()
    table = os.environ["TABLE_NAME"]
    written = 0
    with ThreadPoolExecutor(THREADS) as pool:
        while True:  # a few hundred batches at a time, so a million items are never all in memory
            batches = [b for b in (list(islice(items, BATCH)) for _ in range(THREADS * 64)) if b]
            if not batches:
                return written
            list(pool.map(lambda b: _write(client, table, b), batches))
            written += sum(len(b) for b in batches)


class Generator:
    """Makes scheduled connections in one table; made while the table is still empty (its
    templates are the only connections the table has ever held)."""

    def __init__(self) -> None:
        self._plain = template(tokens=False)
        self._sealed = template(tokens=True)

    def scheduled(
        self, n: int, *, start: datetime, spread: timedelta, tokens: bool, rng: random.Random
    ) -> int:
        """``n`` connections with next runs spread evenly at random over ``[start,
        start + spread)``; with ``tokens`` each carries a sealed-token blob as a real one does.
        Returns the number of items written."""
        schedule = (
            (uuid.UUID(int=rng.getrandbits(128)).hex, start + spread * rng.random())
            for _ in range(n)
        )
        return write(copies(self._sealed if tokens else self._plain, schedule))
