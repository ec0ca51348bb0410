"""Stored responses in the core's database (the API keys' one: SQLite, or PostgreSQL for a fleet).

Every read and write names the owner, so one caller's responses do not exist for another. Calls block
(the database may be across the network): the service runs them in a thread.

A response a restart interrupted (queued or in progress when its core stopped) is marked failed when that
core starts again, never left in progress for a client polling it. In a fleet sharing one PostgreSQL
database each response names the core that runs it (its runner), and a core fails at start only its own.
Those of a core that never starts again are failed by the others (core/database/heartbeat.py).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from inferno.core.database.base import Database
from inferno.core.database.heartbeat import SILENT_RUNNERS
from inferno.v1 import response_service_pb2 as pb

log = logging.getLogger(__name__)

# Statuses a response can still leave.
UNFINISHED = (pb.RESPONSE_STATUS_QUEUED, pb.RESPONSE_STATUS_IN_PROGRESS)
RESTART_ERROR = pb.ResponseError(code="core_unavailable", message="interrupted by a server restart; retry")
ABANDONED_ERROR = pb.ResponseError(code="core_unavailable", message="the core running it stopped; retry")


def ended(response: pb.Response, status: pb.ResponseStatus.ValueType) -> pb.Response:
    """A copy of response that ended now with status."""
    copy = pb.Response()
    copy.CopyFrom(response)
    copy.status = status
    copy.completed_at = int(time.time())
    return copy


@dataclass(frozen=True)
class StoredResponse:
    response: pb.Response
    # The conversation before the response's input (its input is response.params.input).
    history: list[pb.ResponseItem]

    def conversation(self) -> list[pb.ResponseItem]:
        """Everything a response that continues this one follows: history, input, output."""
        return [*self.history, *self.response.params.input, *self.response.output]


class ResponseStore:
    def __init__(self, database: Database, runner: str = "") -> None:
        """runner names this core among those sharing the database (stable across its restarts)."""
        self._database = database
        self._runner = runner
        # Responses stored before runners were recorded have none: a core that restarts fails those too.
        failed = self._fail_unfinished("runner IN (?, '')", (runner,), RESTART_ERROR)
        if failed:
            log.warning("%d stored responses were interrupted by a restart and are marked failed", failed)

    def fail_abandoned(self, cutoff: float) -> int:
        """Fails the unfinished responses of runners silent since cutoff (heartbeat.beat); how many."""
        failed = self._fail_unfinished(f"runner IN ({SILENT_RUNNERS})", (cutoff,), ABANDONED_ERROR)
        if failed:
            log.warning("%d stored responses of cores that stopped are marked failed", failed)
        return failed

    def _fail_unfinished(self, where: str, parameters: tuple[object, ...], error: pb.ResponseError) -> int:
        """Marks failed, with error, the queued and in-progress responses that also match where."""
        unfinished = ", ".join("?" for _ in UNFINISHED)
        with self._database.transaction() as sql:
            rows = sql.query(
                f"SELECT response_id, response FROM responses WHERE status IN ({unfinished}) AND {where}",
                (*(_name(status) for status in UNFINISHED), *parameters),
            )
            for response_id, encoded in rows:
                failed = ended(pb.Response.FromString(base64.b64decode(encoded)), pb.RESPONSE_STATUS_FAILED)
                failed.error.CopyFrom(error)
                sql.execute(
                    "UPDATE responses SET status = ?, response = ? WHERE response_id = ?",
                    (_status(failed), _encode(failed), response_id),
                )
        return len(rows)

    def add(self, owner: str, response: pb.Response, history: Sequence[pb.ResponseItem]) -> None:
        with self._database.transaction() as sql:
            sql.execute(
                "INSERT INTO responses (response_id, owner, created, status, response, runner)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (response.id, owner, time.time(), _status(response), _encode(response), self._runner),
            )
            for position, item in enumerate(history):
                sql.execute(
                    "INSERT INTO response_history (response_id, position, item) VALUES (?, ?, ?)",
                    (response.id, position, _encode(item)),
                )

    def update(self, owner: str, response: pb.Response) -> bool:
        """Writes a response's new state, unless it was cancelled meanwhile; whether it was written."""
        changed = self._database.execute(
            "UPDATE responses SET status = ?, response = ?"
            " WHERE response_id = ? AND owner = ? AND status != ?",
            (_status(response), _encode(response), response.id, owner, _name(pb.RESPONSE_STATUS_CANCELLED)),
        )
        return changed > 0

    def get(self, owner: str, response_id: str) -> StoredResponse | None:
        row = self._database.query_one(
            "SELECT response FROM responses WHERE response_id = ? AND owner = ?", (response_id, owner)
        )
        if row is None:
            return None
        response = pb.Response.FromString(base64.b64decode(row[0]))
        rows = self._database.query(
            "SELECT item FROM response_history WHERE response_id = ? ORDER BY position", (response_id,)
        )
        return StoredResponse(response, [pb.ResponseItem.FromString(base64.b64decode(r[0])) for r in rows])

    def delete(self, owner: str, response_id: str) -> bool:
        with self._database.transaction() as sql:
            deleted = sql.execute(
                "DELETE FROM responses WHERE response_id = ? AND owner = ?", (response_id, owner)
            )
            if deleted:
                sql.execute("DELETE FROM response_history WHERE response_id = ?", (response_id,))
        return deleted > 0


def _encode(message: pb.Response | pb.ResponseItem) -> str:
    return base64.b64encode(message.SerializeToString()).decode("ascii")


def _status(response: pb.Response) -> str:
    return _name(response.status)


def _name(status: pb.ResponseStatus.ValueType) -> str:
    return pb.ResponseStatus.Name(status).removeprefix("RESPONSE_STATUS_").lower()
