"""The broker's messages on disk, so a restarted broker still has them (as Service Bus does).

An append-only file of JSON lines in the broker's data directory: ``put`` records a message's
current state (after it was sent, abandoned, deferred or moved to a dead-letter queue),
``delete`` its removal (completed, or received and deleted), ``duplicate`` a message id that
duplicate detection must keep dropping. The broker appends while it handles an AMQP event and
writes the lines out before it returns to the reactor, that is before the peer sees the outcome:
an accepted send is on disk before the sender learns it was accepted. Lines are written without
``fsync``: the file survives the broker's process, not the machine.

On start the file is replayed (last state of each message wins) and rewritten with only what is
left; while the broker runs, likewise once the file is mostly history. Locks do not survive a
restart: a message that was locked is delivered again, as after a lost lock in Service Bus.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger("localdev.servicebus")

JOURNAL_FILE: Final = "messages.jsonl"


@dataclass(frozen=True)
class SavedMessage:
    seq: int
    raw: bytes
    enqueued_ms: int
    delivery_count: int
    deferred: bool
    dead_letter_source: str | None


@dataclass
class SavedEntity:
    messages: dict[int, SavedMessage]
    duplicates: dict[str, int]  # message id -> expiry (ms)


def _message_line(entity: str, message: SavedMessage) -> dict[str, Any]:
    return {
        "op": "put",
        "entity": entity,
        "seq": message.seq,
        "raw": base64.b64encode(message.raw).decode("ascii"),
        "enqueuedMs": message.enqueued_ms,
        "deliveryCount": message.delivery_count,
        "deferred": message.deferred,
        "deadLetterSource": message.dead_letter_source,
    }


class MessageJournal:
    """The journal in ``directory``; with ``None`` every operation does nothing (in memory)."""

    def __init__(self, directory: Path | None) -> None:
        self._path = directory / JOURNAL_FILE if directory is not None else None
        self._pending: list[str] = []
        self.lines = 0  # in the file since it was last rewritten

    @property
    def enabled(self) -> bool:
        return self._path is not None

    def load(self) -> dict[str, SavedEntity]:
        """Every entity's messages and duplicate ids as they were when the journal was last
        written (lowercase entity names). A torn last line (the process died while writing it)
        is skipped."""
        saved: dict[str, SavedEntity] = {}
        if self._path is None or not self._path.exists():
            return saved
        with self._path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning(
                        "skipped an unreadable journal line %d in %s", number, self._path
                    )
                    continue
                entity = saved.setdefault(str(record["entity"]).lower(), SavedEntity({}, {}))
                operation = record["op"]
                if operation == "put":
                    entity.messages[int(record["seq"])] = SavedMessage(
                        seq=int(record["seq"]),
                        raw=base64.b64decode(record["raw"]),
                        enqueued_ms=int(record["enqueuedMs"]),
                        delivery_count=int(record["deliveryCount"]),
                        deferred=bool(record["deferred"]),
                        dead_letter_source=record.get("deadLetterSource"),
                    )
                elif operation == "delete":
                    entity.messages.pop(int(record["seq"]), None)
                elif operation == "duplicate":
                    entity.duplicates[str(record["id"])] = int(record["expiresMs"])
        return saved

    def rewrite(
        self, entities: Iterable[tuple[str, Iterable[SavedMessage], dict[str, int]]]
    ) -> None:
        """Replace the journal with exactly this state (atomically: a new file, then rename)."""
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        lines = 0
        with temporary.open("w", encoding="utf-8") as out:
            for name, messages, duplicates in entities:
                for key, expires in duplicates.items():
                    out.write(self._line(self._duplicate_record(name, key, expires)))
                    lines += 1
                for message in messages:
                    out.write(self._line(_message_line(name, message)))
                    lines += 1
        os.replace(temporary, self._path)
        self._pending.clear()
        self.lines = lines

    def put(self, entity: str, message: SavedMessage) -> None:
        if self._path is not None:
            self._pending.append(self._line(_message_line(entity, message)))

    def delete(self, entity: str, seq: int) -> None:
        if self._path is not None:
            self._pending.append(self._line({"op": "delete", "entity": entity, "seq": seq}))

    def duplicate(self, entity: str, message_id: str, expires_ms: int) -> None:
        if self._path is not None:
            self._pending.append(self._line(self._duplicate_record(entity, message_id, expires_ms)))

    def flush(self) -> None:
        """Write what was recorded since the last flush (one append)."""
        if self._path is None or not self._pending:
            return
        data = "".join(self._pending)
        self.lines += len(self._pending)
        self._pending.clear()
        with self._path.open("a", encoding="utf-8") as out:
            out.write(data)

    @staticmethod
    def _duplicate_record(entity: str, message_id: str, expires_ms: int) -> dict[str, Any]:
        return {"op": "duplicate", "entity": entity, "id": message_id, "expiresMs": expires_ms}

    @staticmethod
    def _line(record: dict[str, Any]) -> str:
        return json.dumps(record, separators=(",", ":")) + "\n"
