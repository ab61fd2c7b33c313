"""The set of order keys seen in one file: how split CSV orders and duplicate JSON Lines
orders are told; and the parts of the key space a file with more keys than one pass may hold
is judged in, one pass over the file per part (:class:`KeyPartition`, :func:`key_parts`)."""

from __future__ import annotations

import math
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# Keys one pass holds at most (about the orders of the standard 1,000,000-row file): a file with
# more is read in several passes, each judging a part of the key space (KeyPartition).
KEY_BUDGET: Final = 1 << 19


@dataclass(frozen=True, slots=True)
class KeyPartition:
    """Part ``part`` of ``parts`` of the order-key space, by a stable hash (CRC-32 of the
    key's UTF-8 bytes, the same in every process, so a resumed pass owns the same keys)."""

    part: int
    parts: int

    def owns(self, key: str | None) -> bool:
        if not key:
            return self.part == 0  # rows without a key: judged in the first pass
        data = key.encode("utf-8", "surrogatepass")
        return zlib.crc32(data) % self.parts == self.part


def key_parts(size: int, bytes_per_order: float, budget: int = KEY_BUDGET) -> int:
    """How many passes keep each pass's keys within ``budget`` for a file of ``size`` bytes
    whose first block has ``bytes_per_order`` bytes an order."""
    orders = size / max(bytes_per_order, 1.0)
    return max(1, math.ceil(orders / budget))


def bytes_per_order(head: bytes, csv_format: bool) -> float:
    """Bytes an order in the first block of a file: CSV lines whose first field differs from
    the line before start an order; a JSON Lines line is one."""
    lines = head.split(b"\n")[:-1] if b"\n" in head else [head]
    if csv_format:
        firsts = [line.split(b",", 1)[0] for line in lines[1:]]
        orders = sum(1 for a, b in zip(firsts, [b"", *firsts], strict=False) if a != b)
    else:
        orders = sum(1 for line in lines if line.strip())
    return len(head) / max(orders, 1)


class FingerprintSet:
    """Set of 64-bit key fingerprints. The first ``set_limit`` keys live in a Python ``set`` of
    ints (set operations run in C, ~64 bytes a key); past that, in one flat array with open
    addressing (8-16 bytes a key), so a file of ten million orders costs ~160 MiB, not 640.
    Two different keys share a fingerprint with probability ~n²/2⁶⁵ (3e-8 for a million).

    The fingerprint is Python's own string hash (SipHash, randomly keyed per process): computed
    in C and cached on the string, and a set lives only for one scan in one process."""

    __slots__ = ("_count", "_mask", "_set", "_set_limit", "_slots")

    def __init__(self, set_limit: int = 1 << 20) -> None:
        self._set: set[int] | None = set()
        self._set_limit = set_limit
        self._slots = array("q")
        self._mask = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def update(self, keys: Iterable[str]) -> None:
        """Add every key of ``keys`` (repeats allowed): the keys of a resumed pass."""
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) >= 4096:
                self._add_all(batch)
                batch = []
        self._add_all(batch)

    def _add_all(self, keys: list[str]) -> None:
        for key in dict.fromkeys(keys):
            self.add(key)

    def add(self, key: str) -> bool:
        """Add ``key``; False when it was already there."""
        return self.add_new([key])

    def add_new(self, keys: list[str]) -> bool:
        """Add all ``keys`` if none is there yet and none repeats; otherwise add none (False)."""
        if self._set is None:
            return self._add_to_slots(keys)
        values = {key_hash | 1 for key_hash in map(hash, keys)}
        if len(values) != len(keys) or not self._set.isdisjoint(values):
            return False
        self._set |= values
        self._count += len(values)
        if self._count > self._set_limit:
            self._move_to_slots()
        return True

    def _move_to_slots(self) -> None:
        values, self._set = self._set or set(), None
        capacity = 1 << (2 * len(values)).bit_length()
        self._slots = array("q", [0]) * capacity
        self._mask = capacity - 1
        self._insert(values)

    def _insert(self, values: Iterable[int]) -> None:
        slots, mask = self._slots, self._mask
        for value in values:
            index = value & mask
            while slots[index]:
                index = (index + 1) & mask
            slots[index] = value

    def _add_to_slots(self, keys: list[str]) -> bool:
        while (self._count + len(keys)) * 2 > len(self._slots):
            old = self._slots
            self._slots = array("q", [0]) * (len(old) * 2)
            self._mask = len(self._slots) - 1
            self._insert(value for value in old if value)
        slots, mask = self._slots, self._mask
        added = 0
        for key_hash in map(hash, keys):
            value = key_hash | 1  # never 0, which marks an empty slot
            index = value & mask
            current = slots[index]
            while current:
                if current == value:
                    self._remove_latest(keys[:added])
                    return False
                index = (index + 1) & mask
                current = slots[index]
            slots[index] = value
            added += 1
        self._count += added
        return True

    def _remove_latest(self, keys: list[str]) -> None:
        """Take out ``keys``, the last ones added, latest first: a key's slot never depends on
        slots filled after it, so the set is as it was before they came."""
        slots, mask = self._slots, self._mask
        for key in reversed(keys):
            value = hash(key) | 1
            index = value & mask
            while slots[index] != value:
                index = (index + 1) & mask
            slots[index] = 0
