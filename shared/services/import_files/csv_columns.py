"""CSV judged a column at a time: a block of plain lines (no quotes, one line ending, every
field in a shape the models certainly accept) is split into columns with one ``str.split``,
checked with one regular expression a column, grouped into orders by comparing neighbouring
rows, and handed to the chunk writer as text; no per-row Python runs on this path. Any block
that is not plain is left to :mod:`.csv_rows`, with the same verdicts."""

from __future__ import annotations

import itertools
import operator
import re
from typing import Final

from shared.models import ISO_4217, MAX_LINES, ZERO_DECIMAL_CURRENCIES
from shared.patterns import IDENTIFIER as _IDENTIFIER
from shared.services.import_files.formats import CSV_COLUMNS
from shared.services.import_files.rows import Verdicts

# The plain shape of a CSV row that the models certainly accept (no quoting, no spaces, ids
# and SKUs as Identifier/Sku, quantity 1..999,999 <= MAX_QUANTITY, price 0..999,999.99 <=
# MAX_UNIT_PRICE with at most 2 decimals). Rows of other shapes go to the models one by one.
_PLAIN_IDENTIFIERS: Final = re.compile(f"(?:{_IDENTIFIER}\n)*{_IDENTIFIER}")
_PLAIN_QUANTITIES: Final = re.compile("(?:[1-9][0-9]{0,5}\n)*[1-9][0-9]{0,5}")
# No leading zeros: a plain price is also written the way the models write it back.
_PLAIN_PRICE: Final = "(?:0|[1-9][0-9]{0,5})(?:[.][0-9]{1,2})?"
_PLAIN_PRICES: Final = re.compile(f"(?:{_PLAIN_PRICE}\n)*{_PLAIN_PRICE}")
# Zero-decimal currencies have a rule across fields (no minor units): left to the models.
_PLAIN_CURRENCIES: Final = frozenset(ISO_4217 - ZERO_DECIMAL_CURRENCIES)


def plain_batch(  # noqa: PLR0911 - each early return is one reason to go row by row
    verdicts: Verdicts, lines: list[str], first_row: int, *, last: bool
) -> int | None:
    """Judge a batch of lines a column at a time when every line has the plain shape
    (:data:`_PLAIN_IDENTIFIERS` ...) and every order passes; the number of lines used, or
    None to judge the batch row by row instead. Unless ``last``, the batch's last order is
    left for the next batch (it may go on there)."""
    text = "".join(lines)
    count = len(lines)
    crlf = text.count("\r\n")
    if '"' in text or text.count("\r") != crlf or crlf not in (0, count):
        return None  # quoting, or mixed line endings
    if set(map(str.count, lines, itertools.repeat(","))) != {CSV_COLUMNS - 1}:
        return None  # blank, short or long lines
    # Unquoted fields are what lies between the commas: split every line at once.
    fields = text.replace("\r\n" if crlf else "\n", ",").split(",")
    fields.pop()  # after the last line's ending
    ids, customers, skus = fields[0::6], fields[1::6], fields[2::6]
    quantities, prices, currencies = fields[3::6], fields[4::6], fields[5::6]
    # same[i]: row i + 1 is a line of the order of row i (consecutive rows, same id).
    same = list(map(operator.eq, ids[1:], ids))
    # The values of the rows that go on an order beside those of the rows before them.
    compress = itertools.compress
    if (
        list(compress(customers[1:], same)) != list(compress(customers, same))
        or list(compress(currencies[1:], same)) != list(compress(currencies, same))
        or any(map(operator.eq, compress(skus[1:], same), compress(skus, same)))
    ):
        return None  # customer or currency differs within an order, or a sku repeats
    starts = [0, *itertools.compress(range(1, count), map(operator.not_, same))]
    used = count if last else starts.pop()
    if not starts:
        return None  # one order fills the batch: it may go on after it
    # Ids and customers are the same on every line of an order: check them once an order.
    order_ids = list(map(ids.__getitem__, starts))
    order_customers = map(customers.__getitem__, starts)
    if not (
        _PLAIN_CURRENCIES.issuperset(currencies)
        and _PLAIN_IDENTIFIERS.fullmatch(
            "\n".join(itertools.chain(order_ids, order_customers, skus))
        )
        and _PLAIN_QUANTITIES.fullmatch("\n".join(quantities))
        and _PLAIN_PRICES.fullmatch("\n".join(prices))
    ):
        return None
    sizes = list(map(operator.sub, [*starts[1:], used], starts))
    if max(sizes) > MAX_LINES:
        return None
    for start, size in itertools.compress(zip(starts, sizes, strict=True), map((2).__lt__, sizes)):
        if len(set(skus[start : start + size])) != size:
            return None  # a sku repeats within an order of three lines or more
    if verdicts.partition is not None:
        return _owned_orders(verdicts, text, lines, starts, used, first_row, order_ids)
    if not verdicts.keys.add_new(order_ids):
        return None  # an external_id seen before: a split order or a duplicate
    if verdicts.journal is not None:
        verdicts.journal.add_batch(first_row, starts, order_ids)
    verdicts.sink.add_lines(text, lines, starts, used, first_row)
    counts = verdicts.counts
    counts.rows_read += used
    counts.accepted += used
    counts.orders += len(starts)
    return used


def _owned_orders(  # noqa: PLR0917 - plain_batch's state, passed on
    verdicts: Verdicts,
    text: str,
    lines: list[str],
    starts: list[int],
    used: int,
    first_row: int,
    order_ids: list[str],
) -> int | None:
    """:func:`plain_batch`'s verdicts when this pass judges one part of the key space (see
    :class:`~shared.services.import_files.rows.Verdicts`): only the orders whose key it owns
    are checked against its keys and handed on, as runs of consecutive owned orders."""
    owned = list(map(verdicts.owns, order_ids))
    owned_ids = list(itertools.compress(order_ids, owned))
    if not verdicts.keys.add_new(owned_ids):
        return None
    owned_starts = list(itertools.compress(starts, owned))
    if verdicts.journal is not None:
        verdicts.journal.add_batch(first_row, owned_starts, owned_ids)
    counts = verdicts.counts
    counts.rows_read += used
    bounds = [*starts, used]
    offsets = list(itertools.accumulate(map(len, lines[:used]), initial=0))
    order, orders = 0, len(starts)
    while order < orders:
        if not owned[order]:
            order += 1
            continue
        end = order
        while end < orders and owned[end]:
            end += 1
        first, stop = bounds[order], bounds[end]
        verdicts.sink.add_lines(
            text[offsets[first] : offsets[stop]],
            lines[first:stop],
            [start - first for start in starts[order:end]],
            stop - first,
            first_row + first,
        )
        counts.accepted += stop - first
        counts.orders += end - order
        order = end
    return used
