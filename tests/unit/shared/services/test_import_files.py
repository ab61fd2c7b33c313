"""The import file reader on a corpus of hostile files: every file gives exact counts (rows
read = accepted + rejected), the expected whole-file or row-level reasons, and chunks that fit
a storage queue message."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.models import OrderDraft
from shared.services.import_files import (
    MAX_CHUNK_BYTES,
    MAX_CHUNK_ORDERS,
    MAX_QUEUE_MESSAGE_BYTES,
    READ_CHARS,
    ChunkEnvelope,
    ChunkOrder,
    ChunkWriter,
    FileFormat,
    FileRejectedError,
    FingerprintSet,
    ImportedOrder,
    ImportScanner,
    Rejection,
    parse_chunk,
)
from shared.services.import_pipeline import is_import_id

HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"


def csv_file(*rows: str, header: str = HEADER, newline: str = "\n") -> bytes:
    return (header + "".join(f"{row}{newline}" for row in rows)).encode()


def jsonl(*objects: object) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in objects).encode()


def order_json(external_id: str, customer: str = "c1", **changes: object) -> dict[str, object]:
    value: dict[str, object] = {
        "externalId": external_id,
        "customerId": customer,
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "9.99"}],
    }
    value.update(changes)
    return value


@dataclass
class Scan:
    orders: list[ChunkOrder]
    rejections: list[Rejection]
    rows_read: int
    accepted: int
    rejected: int


def scan(
    data: bytes,
    file_format: FileFormat,
    block: int = 7,
    *,
    fast_path: bool = True,
    read_chars: int = READ_CHARS,
) -> Scan:
    """Scan ``data`` into chunks and read the orders back from them, as the queue pass does."""
    messages: list[str] = []
    writer = ChunkWriter(ChunkEnvelope("file", "run"), messages.append)
    rejections: list[Rejection] = []

    def blocks() -> Iterator[bytes]:
        for start in range(0, len(data), block):
            yield data[start : start + block]

    scanner = ImportScanner(
        file_format, writer, rejections.append, fast_path=fast_path, read_chars=read_chars
    )
    counts = scanner.scan(blocks())
    writer.close()
    orders = [order for message in messages for order in parse_chunk(message).orders]
    assert counts.rows_read == counts.accepted + counts.rejected
    assert counts.rejected == len(rejections)
    assert counts.accepted == sum(len(order.rows) for order in orders)
    assert counts.orders == len(orders)
    return Scan(orders, rejections, counts.rows_read, counts.accepted, counts.rejected)


# (id, data, format, rows read, accepted, rejected, reason fragments of the rejected rows)
ROW_CASES = [
    ("plain", csv_file("E1,c1,SKU-1,2,10.00,EUR", "E2,c2,SKU-2,1,3,USD"), 2, 2, 0, []),
    ("bom", b"\xef\xbb\xbf" + csv_file("E1,c1,SKU-1,2,10.00,EUR"), 1, 1, 0, []),
    ("crlf", csv_file("E1,c1,S,1,1.00,EUR", "E1,c1,T,1,2.00,EUR", newline="\r\n"), 2, 2, 0, []),
    (
        "quoted newline and comma in sku",
        csv_file('E1,c1,"SKU\n1",1,1.00,EUR', 'E2,c1,"A,B",1,1.00,EUR', "E3,c1,S,1,1,EUR"),
        3,
        1,
        2,
        ["sku", "sku"],
    ),
    ("quoted plain fields", csv_file('"E1","c1","SKU-1","2","10.00","EUR"'), 1, 1, 0, []),
    (
        "unicode text",
        csv_file("E1,c1,SKÜ-1,1,1.00,EUR", "E2,cliënt,S,1,1.00,EUR", "E3,c1,S,1,1,EUR"),
        3,
        1,
        2,
        ["sku", "customer_id"],
    ),
    (
        "formula prefixes",
        csv_file(
            "=E1,c1,S,1,1,EUR",
            "E2,+c1,S,1,1,EUR",
            "E3,c1,-S,1,1,EUR",
            "E4,c1,@SUM(A1),1,1,EUR",
            "E5,c1,S,1,1,=EU",
        ),
        5,
        0,
        5,
        ["formula"] * 5,
    ),
    (
        "wrong column counts",
        csv_file("E1,c1,S,1,1,EUR,extra", "E2,c1,S,1", "E3,c1,S,1,1,EUR"),
        3,
        1,
        2,
        ["expected 6 columns, found 7", "expected 6 columns, found 4"],
    ),
    (
        "bad numbers",
        csv_file(
            "E1,c1,S,x,1,EUR",
            "E2,c1,S,0,1,EUR",
            "E3,c1,S,1,1.001,EUR",
            "E4,c1,S,1,abc,EUR",
            "E5,c1,S,1,-1,EUR",
            "E6,c1,S,1.5,1,EUR",
            "E7,c1,S,١٢,1,EUR",
            "E8,c1,S,1,NaN,EUR",
            "E9,c1,S,1,1,XXX",
            "E10,c1,S,1,1.5,JPY",
            "E11,c1,S,1,1e3,EUR",  # money has one spelling: no exponent
            "E12,c1,S,1,1.50,EUR",
        ),
        12,
        1,
        11,
        [
            "quantity",
            "quantity",
            "unit_price",
            "unit_price",
            "unit_price",
            "quantity",
            "quantity",
            "unit_price",
            "currency",
            "JPY",
            "unit_price",
        ],
    ),
    (
        "split order",
        csv_file("E1,c1,A,1,1,EUR", "E2,c1,B,1,1,EUR", "E1,c1,C,1,1,EUR"),
        3,
        2,
        1,
        ["split order"],
    ),
    (
        "duplicate order block",
        csv_file("E1,c1,A,1,1,EUR", "E1,c1,B,1,1,EUR", "E2,c1,A,1,1,EUR", "E1,c1,A,1,1,EUR"),
        4,
        3,
        1,
        ["split order"],
    ),
    (
        "one bad line rejects its whole order",
        csv_file("E1,c1,A,1,1,EUR", "E1,c1,B,x,1,EUR", "E1,c1,C,1,1,EUR", "E2,c1,A,1,1,EUR"),
        4,
        1,
        3,
        ["invalid row 3", "quantity", "invalid row 3"],
    ),
    (
        "lines disagree on customer",
        csv_file("E1,c1,A,1,1,EUR", "E1,c2,B,1,1,EUR"),
        2,
        0,
        2,
        ["invalid row 3", "customer_id differs"],
    ),
    (
        "same sku twice in one order",
        csv_file("E1,c1,A,1,1,EUR", "E1,c1,A,2,1,EUR"),
        2,
        0,
        2,
        ["same sku", "same sku"],
    ),
    (
        "huge field in quotes",
        csv_file('E1,c1,"' + "A" * 20_000 + '",1,1,EUR', "E2,c1,S,1,1,EUR"),
        2,
        1,
        1,
        ["longer than"],
    ),
    (
        "overlong line",
        csv_file("E1,c1," + "A" * 100_000 + ",1,1,EUR", "E2,c1,S,1,1,EUR"),
        2,
        1,
        1,
        ["longer than"],
    ),
    (
        "unterminated quote",
        csv_file("E1,c1,S,1,1,EUR", 'E2,c1,"S,1,1,EUR', "E3,c1,S,1,1,EUR"),
        2,
        1,
        1,
        ["expected 6 columns"],
    ),
    (
        "invalid UTF-8 after the first block",
        csv_file(*[f"E{i},c1,S,1,1,EUR" for i in range(5000)]) + b"E9x,c1,S\xe9,1,1,EUR\n",
        5001,
        5000,
        1,
        ["not valid UTF-8"],
    ),
    (
        "blank lines and trailing whitespace lines",
        csv_file("", "E1,c1,S,1,1,EUR", "", "   ", "E2,c1,S,1,1,EUR"),
        2,
        2,
        0,
        [],
    ),
    (
        "overlong ids",
        csv_file("E" * 65 + ",c1,S,1,1,EUR", "E2," + "c" * 300 + ",S,1,1,EUR"),
        2,
        0,
        2,
        ["external_id", "longer than"],
    ),
    (
        "NUL inside a quoted field after the first block",
        csv_file(*[f"E{i},c1,S,1,1,EUR" for i in range(5000)]) + b'E9x,c1,"S\x00",1,1,EUR\n',
        5001,
        5000,
        1,
        ["NUL"],
    ),
]


@pytest.mark.parametrize(
    ("data", "rows_read", "accepted", "rejected", "reasons"),
    [pytest.param(*case[1:], id=case[0]) for case in ROW_CASES],
)
def test_csv_rows_are_counted_and_rejected_with_reasons(
    data: bytes, rows_read: int, accepted: int, rejected: int, reasons: list[str]
) -> None:
    result = scan(data, FileFormat.CSV)

    assert (result.rows_read, result.accepted, result.rejected) == (rows_read, accepted, rejected)
    assert len(result.rejections) == len(reasons)
    for rejection, fragment in zip(result.rejections, reasons, strict=True):
        assert fragment in rejection.reason, rejection


JSONL_CASES = [
    ("plain", jsonl(order_json("E1"), order_json("E2", "c2")), 2, 2, 0, []),
    (
        "bad lines",
        b"not json\n[1,2]\n"
        + jsonl(
            order_json("E1", currency="eur"),
            order_json("E2", lines=[{"sku": "S", "quantity": 1, "unitPrice": 9.99}]),
            order_json("E3", extra=1),
            order_json("=E4"),
            order_json("E5"),
            order_json("E5"),
        ),
        8,
        1,
        7,
        [
            "not valid JSON",
            "not a JSON object",
            "currency",
            "unitPrice",
            "extra",
            "formula",
            "duplicate",
        ],
    ),
    (
        "deep nesting",
        b"[" * 10_000 + b"]" * 10_000 + b"\n" + jsonl(order_json("E1")),
        2,
        1,
        1,
        ["longer than"],
    ),
    (
        "deep nesting within the line limit",
        b"[" * 5_000 + b"]" * 5_000 + b"\n" + jsonl(order_json("E1")),
        2,
        1,
        1,
        ["JSON"],
    ),
    (
        "crlf and bom",
        b"\xef\xbb\xbf" + jsonl(order_json("E1")).replace(b"\n", b"\r\n"),
        1,
        1,
        0,
        [],
    ),
    (
        "same external id for two customers is two orders",
        jsonl(order_json("E1", "c1"), order_json("E1", "c2")),
        2,
        2,
        0,
        [],
    ),
]


@pytest.mark.parametrize(
    ("data", "rows_read", "accepted", "rejected", "reasons"),
    [pytest.param(*case[1:], id=case[0]) for case in JSONL_CASES],
)
def test_jsonl_rows_are_counted_and_rejected_with_reasons(
    data: bytes, rows_read: int, accepted: int, rejected: int, reasons: list[str]
) -> None:
    result = scan(data, FileFormat.JSONL)

    assert (result.rows_read, result.accepted, result.rejected) == (rows_read, accepted, rejected)
    assert len(result.rejections) == len(reasons)
    for rejection, fragment in zip(result.rejections, reasons, strict=True):
        assert fragment in rejection.reason, rejection


FILE_CASES = [
    ("zero bytes", b"", FileFormat.CSV, "empty"),
    ("whitespace only", b"  \n\r\n ", FileFormat.CSV, "empty"),
    ("bom only", b"\xef\xbb\xbf", FileFormat.CSV, "empty"),
    ("header only", HEADER.encode(), FileFormat.CSV, "header but no rows"),
    ("header and blank lines", HEADER.encode() + b"\n\n", FileFormat.CSV, "header but no rows"),
    (
        "wrong header",
        b"id,customer,sku,qty,price,currency\nE1,c1,S,1,1,EUR\n",
        FileFormat.CSV,
        "wrong header",
    ),
    ("missing header", b"E1,c1,S,1,1,EUR\n", FileFormat.CSV, "wrong header"),
    ("binary", bytes(range(256)) * 10, FileFormat.CSV, "binary"),
    ("gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 40, FileFormat.CSV, "binary"),
    (
        "latin-1",
        (HEADER + "E1,c1,S,1,1,EUR\nE2,cliënt,S,1,1,EUR\n").encode("latin-1"),
        FileFormat.CSV,
        "not UTF-8",
    ),
    ("utf-16", (HEADER + "E1,c1,S,1,1,EUR\n").encode("utf-16"), FileFormat.CSV, "UTF-16"),
    ("binary jsonl", b"\x00\x01\x02", FileFormat.JSONL, "binary"),
    ("empty jsonl", b"", FileFormat.JSONL, "empty"),
]


@pytest.mark.parametrize(
    ("data", "file_format", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in FILE_CASES],
)
def test_unreadable_files_are_rejected_as_a_whole_before_any_order(
    data: bytes, file_format: FileFormat, reason: str
) -> None:
    messages: list[str] = []
    writer = ChunkWriter(ChunkEnvelope("file", "run"), messages.append)
    rejections: list[Rejection] = []

    with pytest.raises(FileRejectedError) as raised:
        ImportScanner(file_format, writer, rejections.append).scan(iter([data]))
    writer.close()

    assert reason in raised.value.reason
    assert messages == []
    assert rejections == []


def test_csv_groups_consecutive_rows_into_orders_with_their_row_numbers() -> None:
    data = csv_file("E1,c1,A,2,10.00,EUR", "E1,c1,B,1,5.5,EUR", 'E2,c2,"C",3,1,USD', newline="\r\n")

    result = scan(data, FileFormat.CSV)

    assert [(o.external_id, o.customer_id, o.rows) for o in result.orders] == [
        ("E1", "c1", (2, 3)),
        ("E2", "c2", (4,)),
    ]
    assert str(OrderDraft.model_validate(result.orders[0].body()).total()) == "25.50"


def test_row_numbers_follow_the_file_lines_with_quoted_newlines() -> None:
    data = csv_file('E1,c1,"A\nB",1,1,EUR', "E2,c1,S,x,1,EUR")

    result = scan(data, FileFormat.CSV)

    assert [r.row for r in result.rejections] == [2, 4]


def test_hundred_thousand_rows_chunk_into_few_messages_under_the_queue_limit() -> None:
    rows = [
        f"E{i // 2},c{(i // 2) % 97},SKU-{i % 13},{1 + i % 5},{i % 1000}.{i % 100:02d},EUR"
        for i in range(100_000)
    ]
    rows[500] = "E250,c1,=cmd,1,1,EUR"  # formula: rejects order E250 (both rows)
    data = csv_file(*rows)
    messages: list[str] = []
    writer = ChunkWriter(ChunkEnvelope("big.csv", "run-1"), messages.append)
    rejections: list[Rejection] = []

    counts = ImportScanner(FileFormat.CSV, writer, rejections.append).scan(
        data[i : i + 65536] for i in range(0, len(data), 65536)
    )
    chunks = writer.close()

    assert (counts.rows_read, counts.accepted, counts.rejected) == (100_000, 99_998, 2)
    assert chunks == len(messages)
    sizes = [len(message.encode()) for message in messages]
    assert max(sizes) <= MAX_CHUNK_BYTES
    assert all(len(base64.b64encode(m.encode())) <= MAX_QUEUE_MESSAGE_BYTES for m in messages)
    # As few as the limits allow: every chunk but the last holds the most orders a chunk may.
    assert all(len(parse_chunk(m).orders) == MAX_CHUNK_ORDERS for m in messages[:-1])
    decoded = [json.loads(message) for message in messages]
    assert [d["chunk"] for d in decoded] == list(range(chunks))
    assert sum(count for d in decoded for _, count in d["rows"]) == 99_998
    assert sum(len(parse_chunk(m).orders) for m in messages) == 49_999


@pytest.mark.parametrize("set_limit", [1 << 20, 100], ids=["set", "flat array"])
def test_fingerprint_set_grows_and_finds_duplicates(set_limit: int) -> None:
    seen = FingerprintSet(set_limit=set_limit)

    assert all(seen.add(f"key-{i}") for i in range(10_000))
    assert not any(seen.add(f"key-{i}") for i in range(10_000))
    assert len(seen) == 10_000
    # All or nothing: a batch with one known key, or a key twice, adds none of its keys.
    assert not seen.add_new(["new-1", "new-2", "key-5", "new-3"])
    assert not seen.add_new(["new-1", "new-2", "new-1"])
    assert len(seen) == 10_000
    assert seen.add_new(["new-1", "new-2", "new-3"])
    assert not any(seen.add(key) for key in ("new-1", "new-2", "new-3"))
    assert len(seen) == 10_003


# --------------------------------------------------- the column way and the row way agree


def outcome(result: Scan) -> tuple[object, ...]:
    orders = [(o.customer_id, o.external_id, o.currencies, o.rows, o.lines) for o in result.orders]
    rejections = [(r.row, r.external_id, r.reason) for r in result.rejections]
    return orders, rejections, result.rows_read, result.accepted, result.rejected


@pytest.mark.parametrize("read_chars", [40, 100, 256 * 1024])
@pytest.mark.parametrize("data", [pytest.param(case[1], id=case[0]) for case in ROW_CASES])
def test_both_ways_agree_on_the_corpus(data: bytes, read_chars: int) -> None:
    assert outcome(scan(data, FileFormat.CSV, read_chars=read_chars)) == outcome(
        scan(data, FileFormat.CSV, fast_path=False, read_chars=read_chars)
    )


class RecordingSink(ChunkWriter):
    def __init__(self) -> None:
        super().__init__(ChunkEnvelope("file", "run"), lambda message: None)
        self.plain_lines = 0
        self.one_by_one = 0

    def add(self, order: ImportedOrder) -> None:
        self.one_by_one += 1
        super().add(order)

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        self.plain_lines += count
        super().add_lines(text, lines, starts, count, first_row)


def test_clean_lines_take_the_column_way_and_a_bad_row_sends_only_its_block_row_by_row() -> None:
    rows = [f"E{i // 2},c{i // 2 % 7},S{i % 2},1,2.50,EUR" for i in range(2000)]
    rows[1001] = "E500,c3,S1,1,=2.50,EUR"
    sink = RecordingSink()
    rejections: list[Rejection] = []

    scanner = ImportScanner(FileFormat.CSV, sink, rejections.append, read_chars=4096)
    counts = scanner.scan([csv_file(*rows)])

    assert (counts.rows_read, counts.accepted, counts.rejected) == (2000, 1998, 2)
    assert [r.row for r in rejections] == [1002, 1003]
    # Only the orders of the one block with the bad row went one by one.
    assert 0 < sink.one_by_one < 4096 // 20
    assert sink.plain_lines + 2 * sink.one_by_one + 2 == 2000


# Each list starts with values of the plain shape; most drawn rows are plain, so the column way
# is taken often and the odd value sends its block row by row.
_IDS = ["E1", "E2", "E3", "E-4", "", "=E5", "E 6", "É7", "E8\x00", "x" * 65]
_CUSTOMERS = ["c1", "c2", "c.3", "+c4", "c1 ", ""]
_SKUS = ["A", "B", "C", "s" * 64, "A ", "@D", "s" * 65]
_QUANTITIES = ["1", "7", "999999", "1000000", "1000001", "0", "-1", " 3", "01", "x", "", "٣"]
_PRICES = ["1", "1.5", "1.50", "0", "01.00", "999999.99", "1.555", "-1", "1e2", "1000000.00"]
_PRICES += ["1000000.01", " 2", "abc", "", "NaN", "Infinity", "1,5", "-0"]
_CURRENCIES = ["EUR", "USD", "JPY", "XXX", "eur", ""]
_PLAIN = {id(_IDS): 4, id(_CUSTOMERS): 3, id(_SKUS): 4, id(_QUANTITIES): 3, id(_PRICES): 6}
_PLAIN[id(_CURRENCIES)] = 2


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """Orders of 1-3 lines, mostly plain; now and then an odd value, a repeated id, a
    blank, short or quoted line, in one of the two line endings."""

    def field(values: list[str]) -> str:
        plain = draw(st.integers(0, 79)) > 0
        value = draw(st.sampled_from(values[: _PLAIN[id(values)]] if plain else values))
        return f'"{value}"' if "," in value or draw(st.integers(0, 299)) == 0 else value

    ending = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [HEADER.rstrip("\n") + ending]
    for number in range(draw(st.integers(0, 15))):
        shape = draw(st.integers(0, 89))
        if shape == 0:
            lines.append(ending)  # blank line
        elif shape == 1:
            lines.append(f'E{number},c1,"A{ending}B",1,1,EUR{ending}')  # quoted line break
        elif shape == 2:
            lines.append(f"E{number},c1,A,1{ending}")  # short row
        else:
            external_id = f"E{number}" if draw(st.integers(0, 29)) else field(_IDS)
            customer, currency = field(_CUSTOMERS), field(_CURRENCIES)
            for line in range(draw(st.integers(1, 3))):
                if not draw(st.integers(0, 39)):
                    customer, currency = field(_CUSTOMERS), field(_CURRENCIES)
                sku = f"S{line}" if draw(st.integers(0, 29)) else field(_SKUS)
                row = [external_id, customer, sku, field(_QUANTITIES), field(_PRICES)]
                lines.append(",".join([*row, currency]) + ending)
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.removesuffix(ending)  # no line ending at the end
    return text.encode()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=csv_files(), read_chars=st.sampled_from([16, 100, 400, 256 * 1024]))
def test_both_ways_agree_on_generated_files(data: bytes, read_chars: int) -> None:
    try:
        fast = outcome(scan(data, FileFormat.CSV, read_chars=read_chars))
    except FileRejectedError as error:
        fast = ("rejected", error.reason)
    try:
        slow = outcome(scan(data, FileFormat.CSV, fast_path=False, read_chars=read_chars))
    except FileRejectedError as error:
        slow = ("rejected", error.reason)

    assert fast == slow
    if fast[0] != "rejected":
        for order in scan(data, FileFormat.CSV).orders:  # what passed, the models accept
            OrderDraft.model_validate(order.body())


@pytest.mark.parametrize(
    ("name", "valid"),
    [("orders.csv", True), ("orders.csv\n", False), ("a/b.csv", False), ("a\x7f.csv", False)],
)
def test_import_ids_are_whole_names_without_separators_or_control_characters(
    name: str, valid: bool
) -> None:
    assert is_import_id(name) is valid


def test_an_endless_order_is_refused_row_by_row_without_being_held() -> None:
    rows = [f"E1,c1,S{i},1,1.00,EUR" for i in range(5_000)]

    result = scan(csv_file(*rows, "E2,c1,S,1,1.00,EUR"), FileFormat.CSV, block=65536)

    assert (result.rows_read, result.accepted, result.rejected) == (5_001, 1, 5_000)
    reasons = [r.reason for r in result.rejections]
    assert reasons.count("the order has more than 100 lines") == 5_000 - 101
    assert sorted(r.row for r in result.rejections) == list(range(2, 5_002))
    assert [o.external_id for o in result.orders] == ["E2"]
