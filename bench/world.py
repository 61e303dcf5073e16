"""What the benchmark tables share in one run: the local AWS stack, fresh tables, results."""

from __future__ import annotations

import uuid

from bench.meters import point_store_at
from bench.report import Table
from local.aws import LocalAws, create_table, start_local_aws


class World:
    """The local AWS stack (started on first use, stopped by ``close``) and the tables so far."""

    def __init__(self, aws: LocalAws | None = None) -> None:
        self._aws = aws
        self._own_aws = aws is None
        self.results: dict[str, Table] = {}

    @property
    def aws(self) -> LocalAws:
        if self._aws is None:
            self._aws = start_local_aws()
        return self._aws

    def fresh_table(self, purpose: str) -> str:
        """A new empty table from template.yaml; the store in this process points at it."""
        name = f"bench-{purpose}-{uuid.uuid4().hex[:8]}"
        create_table(self.aws.client("dynamodb"), name)
        point_store_at(name, self.aws.env())
        return name

    def drop_table(self, name: str) -> None:
        self.aws.client("dynamodb").delete_table(TableName=name)

    def close(self) -> None:
        if self._aws is not None and self._own_aws:
            self._aws.stop()
            self._aws = None
