"""Stored responses in the core's database (the API keys' one: SQLite, or PostgreSQL for a fleet).

Every read and write names the owner, so one caller's responses do not exist for another. Calls block
(the database may be across the network): the service runs them in a thread.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass

from inferno.core.database.base import Database
from inferno.v1 import response_service_pb2 as pb

# Statuses a response can still leave.
UNFINISHED = (pb.RESPONSE_STATUS_QUEUED, pb.RESPONSE_STATUS_IN_PROGRESS)


@dataclass(frozen=True)
class StoredResponse:
    response: pb.Response
    # The conversation before the response's input (its input is response.params.input).
    history: list[pb.ResponseItem]

    def conversation(self) -> list[pb.ResponseItem]:
        """Everything a response that continues this one follows: history, input, output."""
        return [*self.history, *self.response.params.input, *self.response.output]


class ResponseStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, owner: str, response: pb.Response, history: Sequence[pb.ResponseItem]) -> None:
        with self._database.transaction() as sql:
            sql.execute(
                "INSERT INTO responses (response_id, owner, created, status, response)"
                " VALUES (?, ?, ?, ?, ?)",
                (response.id, owner, time.time(), _status(response), _encode(response)),
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
