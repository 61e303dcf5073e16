"""The stack fixtures of the end-to-end tests. Each module gets a local stack of its own (module
scope: the tests of a module build on each other, and no module sees another's data or settings).

A module says how its stack starts with ``STACK`` (start_stack's options; by default no schedule
tick during the module) and how its connection's first sync goes with ``FIRST_SYNC``
(``helpers.first_sync``'s arguments), and may instead define ``stack`` or ``synced`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.stack import LocalStack, start_stack
from tests.e2e.helpers import FirstSync, StackOptions, SyncedConnection, first_sync


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The module's own local stack, started as its ``STACK`` says, stopped after its tests."""
    options: StackOptions = {"schedule_every": 3600, **getattr(request.module, "STACK", {})}
    running = start_stack(workdir=tmp_path_factory.mktemp("stack"), **options)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def synced(request: pytest.FixtureRequest, stack: LocalStack) -> SyncedConnection:
    """The module's connection, its first sync done."""
    options: FirstSync = request.module.FIRST_SYNC
    return first_sync(stack, **options)
