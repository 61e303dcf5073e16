"""What every admin service works with: the wiring, the pass queue, a connection's two sides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from contactsync.admin.errors import NotFoundError
from contactsync.runtime.messages import Reason, SyncMessage
from contactsync.runtime.queue import PassQueue
from contactsync.runtime.sides import Wiring
from contactsync.store.models import Connection

if TYPE_CHECKING:
    from contactsync.sync.reconcile import Sides


@dataclass(frozen=True)
class AdminContext:
    wiring: Wiring
    queue: PassQueue

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.wiring.clock

    def sides(self, conn: Connection) -> Sides:
        """The connection's CRM and provider sides, as a pass would build them."""
        # Lazy: the pass store brings the engine, which only the requests that build sides need.
        from contactsync.store.pass_store import DynamoPassStore  # noqa: PLC0415

        view = DynamoPassStore().load_connection(conn.connection_id)
        if view is None:
            raise NotFoundError(f"no connection {conn.connection_id!r}")
        return self.wiring.sides_for(view)

    def queue_pass(
        self,
        connection_id: str,
        reason: Reason,
        *,
        full: bool = False,
        crm_ids: list[str] | None = None,
    ) -> None:
        """Put a pass for the connection on the queue."""
        message = SyncMessage(
            connection_id=connection_id, reason=reason, full=full, crm_ids=crm_ids or []
        )
        self.queue.send([message])
