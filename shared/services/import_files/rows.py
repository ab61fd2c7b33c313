"""What both readers share: the imported order and rejection types, the text checks every
field gets beyond the models, validation with the API's models (one call a batch) and the
wording of their reasons, and :class:`Verdicts`, where a reader's verdicts go."""

from __future__ import annotations

import bisect
import csv
import io
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Protocol

from pydantic import Field, TypeAdapter, ValidationError

from shared.models import Identifier, OrderDraft
from shared.services.import_files.order_keys import FingerprintSet, KeyPartition

# Identifiers and SKUs are at most 64 characters, numbers far less.
MAX_FIELD_CHARS: Final = 256
FORMULA_PREFIXES: Final = ("=", "+", "-", "@")
_JSON_TO_CSV: Final = {
    "externalId": "external_id",
    "customerId": "customer_id",
    "unitPrice": "unit_price",
}


class ImportedOrderIn(OrderDraft):
    """One imported order: the API's order body plus the partner's ids (a JSON Lines line)."""

    external_id: Identifier = Field(alias="externalId")
    customer_id: Identifier = Field(alias="customerId")


@dataclass(frozen=True, slots=True)
class Rejection:
    row: int
    external_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportedOrder:
    customer_id: str
    external_id: str
    draft: OrderDraft
    rows: tuple[int, ...]  # file rows this order came from (CSV: one per line)

    def csv_text(self) -> str:
        """The order's lines as CSV records, as a chunk carries them (see :class:`ChunkWriter`).
        Written by the csv module, so any value would round-trip; validated values never need
        quoting."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows(
            (
                self.external_id,
                self.customer_id,
                line.sku,
                line.quantity,
                line.unit_price,
                self.draft.currency,
            )
            for line in self.draft.lines
        )
        return buffer.getvalue()

    def line_rows(self) -> list[int]:
        """The file row of each CSV record of :meth:`csv_text` (a JSON Lines order is one row
        however many lines it has)."""
        if len(self.rows) == len(self.draft.lines):
            return list(self.rows)
        return [self.rows[0]] * len(self.draft.lines)


@dataclass(slots=True)
class ScanCounts:
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    orders: int = 0


def has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problem(name: str, value: str) -> str | None:
    """Checks every text field gets, beyond what the models check."""
    if len(value) > MAX_FIELD_CHARS:
        return f"{name} is longer than {MAX_FIELD_CHARS} characters"
    if "\x00" in value:
        return f"{name} contains NUL characters (or the line is too long)"
    if value.startswith(FORMULA_PREFIXES):
        return f"{name} starts with {value[0]!r} (spreadsheet formula injection)"
    if not value.isascii() and has_surrogates(value):
        return f"{name} is not valid UTF-8"
    return None


@cache
def _orders_adapter() -> TypeAdapter[list[tuple[str, str, OrderDraft]]]:
    """Validates a batch of CSV orders in one call, as ``(externalId, customerId, draft)``:
    the fields of :class:`ImportedOrderIn`, so an order passes exactly when the model
    accepts it (the model, used on failures, words the reason)."""
    return TypeAdapter(list[tuple[Identifier, Identifier, OrderDraft]])


def model_reason(error: ValidationError, rows: tuple[int, ...], csv_names: bool) -> tuple[int, str]:
    """The row and a one-line reason for the first validation error."""
    first = error.errors(include_url=False)[0]
    loc = first["loc"]
    row = rows[0]
    if len(loc) >= 2 and loc[0] == "lines" and isinstance(loc[1], int) and len(rows) > 1:
        row = rows[loc[1]] if loc[1] < len(rows) else rows[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a known field"
    if csv_names:
        parts = [str(part) for part in loc if not isinstance(part, int)]
        names = [_JSON_TO_CSV.get(part, part) for part in parts if part != "lines"]
        where = names[-1] if names else "order"
    else:
        where = "/".join(str(part) for part in loc) or "order"
    return row, f"{where}: {message}"


def imported_order(order: ImportedOrderIn, rows: tuple[int, ...]) -> ImportedOrder:
    draft = OrderDraft.model_construct(lines=order.lines, currency=order.currency)
    return ImportedOrder(order.customer_id, order.external_id, draft, rows)


OrderInput = tuple[str, str, dict[str, Any]]
_ValidOrder = tuple[str, str, OrderDraft]


def validate_orders(orders: list[OrderInput]) -> list[_ValidOrder | ValidationError]:
    """Validate a batch of orders with one call; on failure, the failed orders go through
    :class:`ImportedOrderIn` one by one (its errors word the reasons) and the others through
    the batch adapter again."""
    adapter = _orders_adapter()
    try:
        return list(adapter.validate_python(orders))
    except ValidationError as error:
        failed = {loc[0] for item in error.errors(include_url=False) if (loc := item["loc"])}
    passing = [order for index, order in enumerate(orders) if index not in failed]
    try:
        valid = iter(adapter.validate_python(passing))
    except ValidationError:
        return [_validate_order(order) for order in orders]
    return [
        _validate_order(order) if index in failed else next(valid)
        for index, order in enumerate(orders)
    ]


def _validate_order(order: OrderInput) -> _ValidOrder | ValidationError:
    external_id, customer_id, body = order
    payload = {
        "externalId": external_id,
        "customerId": customer_id,
        "currency": body["currency"],
        "lines": body["lines"],
    }
    try:
        valid = ImportedOrderIn.model_validate(payload)
    except ValidationError as error:
        return error
    imported = imported_order(valid, ())
    return imported.external_id, imported.customer_id, imported.draft


class OrderSink(Protocol):
    """Where valid orders go (a :class:`ChunkWriter`), in file order."""

    def add(self, order: ImportedOrder) -> None:
        """One order judged by the models."""

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        """Orders of plain CSV lines: ``lines[:count]`` are rows ``first_row`` on, ``text`` is
        all of ``lines`` joined, and order ``k`` starts at line ``starts[k]``."""


class KeyJournal:
    """The order keys added to the set, with the row of their order, in file order, until a
    checkpoint takes those before its row (:meth:`take_before`): what a resumed pass needs to
    rebuild the set exactly as it was at that row."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # (row of the first order, None, key) or, for a plain batch, (first row, starts, keys):
        # key k belongs to the order at row first + starts[k].
        self._entries: deque[tuple[int, list[int] | None, Any]] = deque()

    def add(self, row: int, key: str) -> None:
        self._entries.append((row, None, key))

    def add_batch(self, first_row: int, starts: list[int], keys: list[str]) -> None:
        self._entries.append((first_row, starts, keys))

    def take_before(self, row: int) -> list[str]:
        """The keys of orders before ``row``, taken out of the journal."""
        taken: list[str] = []
        entries = self._entries
        while entries:
            first, starts, keys = entries[0]
            if starts is None:
                if first >= row:
                    break
                taken.append(keys)
                entries.popleft()
                continue
            cut = bisect.bisect_left(starts, row - first)
            taken.extend(keys[:cut])
            if cut < len(keys):
                entries[0] = (first, starts[cut:], keys[cut:])
                break
            entries.popleft()
        return taken


class Verdicts:
    """Where a reader's verdicts go: valid orders to ``sink``, rejected rows to
    ``on_rejection``, both counted in :attr:`counts`; ``keys`` are the order keys seen so far
    (split and duplicate orders), ``journal`` (for checkpoints) the keys added by row."""

    __slots__ = ("_on_rejection", "counts", "journal", "keys", "partition", "sink")

    def __init__(
        self,
        sink: OrderSink,
        on_rejection: Callable[[Rejection], None],
        *,
        journal: bool = False,
        partition: KeyPartition | None = None,
    ) -> None:
        self.sink = sink
        self._on_rejection = on_rejection
        self.counts = ScanCounts()
        # One pass of several keeps its keys in the flat array from the first key: one buffer,
        # given back whole when the pass ends, where a set's int objects leave the small-object
        # arenas of one pass fragmented under the next (the peak crept up ~2 MiB a pass). The
        # per-key loop costs little here: a pass adds only its own part's keys.
        self.keys = FingerprintSet(set_limit=0) if partition is not None else FingerprintSet()
        self.journal = KeyJournal() if journal else None
        # With a partition, this pass gives the verdicts of the orders whose key it owns only
        # (and of rows without a key in part 0), and holds only their keys: a split or
        # duplicate verdict depends on that one key's occurrences alone, so each part's pass
        # decides them exactly, and every row gets its verdict in exactly one pass.
        self.partition = partition

    def owns(self, key: str | None) -> bool:
        partition = self.partition
        return partition is None or partition.owns(key)

    def add_key(self, key: str) -> bool:
        """Add the order key; False when it was seen before (a key of another part: True)."""
        return self.keys.add(key) if self.owns(key) else True

    def reject(self, row: int, external_id: str, reason: str, *, key: str | None = None) -> None:
        """``key``: the order key, when it is not ``external_id`` (a CSV order's key)."""
        if self.partition is not None and not self.partition.owns(key or external_id):
            return
        self.counts.rejected += 1
        self._on_rejection(Rejection(row, external_id, reason))

    def accept(self, order: ImportedOrder, *, key: str | None = None) -> None:
        if self.partition is not None and not self.partition.owns(key or order.external_id):
            return
        self.counts.accepted += len(order.rows)
        self.counts.orders += 1
        self.sink.add(order)
