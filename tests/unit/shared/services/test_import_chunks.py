"""The chunk format on its own: v3 chunks (compressed CSV) round trip, v2 chunks still in queues
across a deploy are still read, and a hostile v3 chunk is refused with its reason."""

from __future__ import annotations

import base64
import json
import random
import string
import zlib
from collections.abc import Sequence

import pytest

from shared.services.import_files import (
    CHUNK_VERSION,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_ORDERS,
    MAX_CHUNK_TEXT_BYTES,
    ChunkEnvelope,
    ChunkWriter,
    FileFormat,
    ImportedOrder,
    ImportScanner,
    InvalidChunkError,
    Rejection,
    parse_chunk,
)


def chunk_messages(text: str, **writer_options: int) -> list[str]:
    messages: list[str] = []
    writer = ChunkWriter(ChunkEnvelope("file.csv", "run-1"), messages.append, **writer_options)
    rejections: list[Rejection] = []
    data = ("external_id,customer_id,sku,quantity,unit_price,currency\n" + text).encode()
    ImportScanner(FileFormat.CSV, writer, rejections.append).scan(iter([data]))
    assert writer.close() == len(messages)
    assert rejections == []
    return messages


def two_line_orders(orders: int) -> str:
    return "".join(
        f"E{i:07d},c{i % 977},SKU-{i % 13},{1 + i % 5},{i % 100}.50,EUR\n"
        f"E{i:07d},c{i % 977},SKU-{(i + 1) % 13},1,2.25,EUR\n"
        for i in range(orders)
    )


def v3(packed: str, rows: list[list[int]] | None = None) -> str:
    return json.dumps(
        {
            "v": 3,
            "importId": "file.csv",
            "runId": "run-1",
            "chunk": 0,
            "rows": rows or [[2, 1]],
            "z": packed,
        }
    )


def packed(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_v3_chunks_round_trip_with_at_least_twice_the_orders_of_v2() -> None:
    messages = chunk_messages(two_line_orders(3000))

    chunks = [parse_chunk(message) for message in messages]
    assert all(json.loads(m)["v"] == CHUNK_VERSION == 3 for m in messages)
    assert all(len(message) <= MAX_CHUNK_BYTES for message in messages)
    # v2 chunks held about 380 of these orders; every v3 one, the first too, the most a chunk
    # may (written by ISA-L, read back by the standard library's zlib).
    assert [len(chunk.orders) for chunk in chunks] == [MAX_CHUNK_ORDERS] * 3
    orders = [order for chunk in chunks for order in chunk.orders]
    assert [chunk.number for chunk in chunks] == [0, 1, 2]
    assert orders[0].external_id == "E0000000"
    assert orders[0].rows == (2, 3)
    assert orders[0].lines == (("SKU-0", 1, "0.50"), ("SKU-1", 1, "2.25"))
    assert orders[-1].external_id == "E0002999"
    assert orders[-1].rows == (6000, 6001)


def test_text_that_compresses_badly_is_split_into_chunks_under_the_queue_limit() -> None:
    chooser = random.Random(13)
    alphabet = string.ascii_letters + string.digits

    def noise(length: int) -> str:
        return "".join(chooser.choice(alphabet) for _ in range(length))

    # After orders that compress 5x, random ids (75%): far fewer orders fit than the writer
    # expects by then, so its chunk comes out too large and goes out split.
    text = two_line_orders(1000) + "".join(
        f"{noise(60)},{noise(60)},S,1,1.00,EUR\n" for _ in range(1200)
    )

    messages = chunk_messages(text)

    assert len(messages) > 5
    assert all(len(message) <= MAX_CHUNK_BYTES for message in messages)
    chunks = [parse_chunk(message) for message in messages]
    assert [chunk.number for chunk in chunks] == list(range(len(messages)))
    rows = [row for chunk in chunks for order in chunk.orders for row in order.rows]
    assert rows == list(range(2, 2000 + 1200 + 2))


def test_a_first_chunk_that_compresses_worse_than_assumed_goes_out_split() -> None:
    chooser = random.Random(7)
    alphabet = string.ascii_letters + string.digits
    # Random ids from the first row (75% of the text): the first chunk takes the text of 3x
    # compression, which comes out well over the limit.
    text = "".join(
        f"{''.join(chooser.choices(alphabet, k=60))},{''.join(chooser.choices(alphabet, k=60))},"
        "S,1,1.00,EUR\n"
        for _ in range(1500)
    )

    messages = chunk_messages(text)

    assert all(len(message) <= MAX_CHUNK_BYTES for message in messages)
    chunks = [parse_chunk(message) for message in messages]
    assert [chunk.number for chunk in chunks] == list(range(len(messages)))
    rows = [row for chunk in chunks for order in chunk.orders for row in order.rows]
    assert rows == list(range(2, 1500 + 2))


def test_the_order_limit_is_the_writers_choice() -> None:
    messages = chunk_messages(two_line_orders(25), max_orders=10)

    assert [len(parse_chunk(message).orders) for message in messages] == [10, 10, 5]


def test_v2_chunks_already_in_queues_are_still_read() -> None:
    message = json.dumps(
        {
            "v": 2,
            "importId": "file.csv",
            "runId": "run-1",
            "chunk": 4,
            "rows": [[2, 2], [7, 1]],
            "csv": 'E1,c1,A,2,10.00,EUR\r\nE1,c1,B,1,5.5,EUR\nE2,c2,"C",3,1,USD\n',
        }
    )

    chunk = parse_chunk(message)

    assert (chunk.import_id, chunk.run_id, chunk.number) == ("file.csv", "run-1", 4)
    assert [(o.external_id, o.rows, o.lines) for o in chunk.orders] == [
        ("E1", (2, 3), (("A", 2, "10.00"), ("B", 1, "5.5"))),
        ("E2", (7,), (("C", 3, "1"),)),
    ]


BOMB = zlib.compress(b"E1,c1,S,1,1.00,EUR\n" * (10 * MAX_CHUNK_TEXT_BYTES // 19), 9)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param(v3("not base64!"), "not base64", id="bad base64"),
        pytest.param(v3(packed(b"plain text, not zlib")), "not zlib data", id="bad zlib"),
        pytest.param(v3(packed(BOMB)), f"larger than {MAX_CHUNK_TEXT_BYTES}", id="bomb"),
        pytest.param(
            v3(packed(zlib.compress(b"E1,c1,S,1,1.00,EUR\n")[:-6])), "truncated", id="truncated"
        ),
        pytest.param(
            v3(packed(zlib.compress(b"E1,c1,S,1,1.00,EUR\n") + b"more")),
            "trailing data",
            id="trailing data",
        ),
        pytest.param(
            v3(packed(zlib.compress("E1,c1,S,1,1.00,EUR\n".encode("utf-16")))),
            "not UTF-8",
            id="not utf-8",
        ),
        pytest.param(
            v3(packed(zlib.compress(b"E1,c1,S,1,1.00,EUR\nE2,c1,S,1,1.00,EUR\n"))),
            "do not match",
            id="rows off",
        ),
        pytest.param(v3(packed(zlib.compress(b'E1,c1,"S,1,1.00,EUR\n'))), "malformed", id="csv"),
        pytest.param(
            v3(packed(zlib.compress(b"E1,c1,S,1,1.00,EUR\n"))).replace('"z"', '"csv"'),
            "not an import chunk",
            id="v3 with v2 text",
        ),
        pytest.param(
            v3(packed(zlib.compress(b"E1,c1,S,1,1.00,EUR\n"))).replace('"v": 3', '"v": 4'),
            "not an import chunk",
            id="unknown version",
        ),
    ],
)
def test_hostile_v3_chunks_are_refused_with_their_reason(message: str, reason: str) -> None:
    assert len(message) < MAX_CHUNK_BYTES  # the bomb too: small on the queue

    with pytest.raises(InvalidChunkError) as raised:
        parse_chunk(message)

    assert reason in str(raised.value)


def test_a_v3_chunk_of_exactly_the_text_limit_is_read() -> None:
    line = b"E1,c1,S,1,1.00,EUR\n"
    data = line * (MAX_CHUNK_TEXT_BYTES // len(line))

    chunk = parse_chunk(v3(packed(zlib.compress(data)), rows=[[2, len(data) // len(line)]]))

    assert len(chunk.orders) == 1
    assert len(chunk.orders[0].rows) == len(data) // len(line)


class RecordedCalls:
    """The sink calls a scan makes, in order, to replay them into writers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def add(self, order: ImportedOrder) -> None:
        self.calls.append(("add", (order,)))

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        self.calls.append(("add_lines", (text, list(lines), list(starts), count, first_row)))


def test_a_writer_restored_from_its_pending_orders_packs_the_same_chunks() -> None:
    """What a checkpoint keeps between chunks (the held orders and the learnt budget) is enough
    for a resumed pass to send exactly the chunks, numbers and bytes, the first would have:
    plain lines, orders added one by one (quoted fields), and text that compresses badly
    enough to go out split."""
    chooser = random.Random(5)
    alphabet = string.ascii_letters + string.digits
    text = (
        two_line_orders(2500)
        + "".join(f'"Q{i}",c{i},SKU-1,1,1.00,EUR\n' for i in range(300))
        + "".join(
            f"{''.join(chooser.choices(alphabet, k=60))},c1,S,1,1.00,EUR\n" for _ in range(2500)
        )
        + two_line_orders(2500).replace("E0", "F0")
    )
    data = ("external_id,customer_id,sku,quantity,unit_price,currency\n" + text).encode()
    recorded = RecordedCalls()
    rejections: list[Rejection] = []
    ImportScanner(FileFormat.CSV, recorded, rejections.append, read_chars=4096).scan(iter([data]))
    assert rejections == []

    def replay(writer: ChunkWriter, calls: list[tuple[str, tuple[object, ...]]]) -> None:
        for name, args in calls:
            getattr(writer, name)(*args)

    envelope = ChunkEnvelope("file.csv", "run-1")
    whole: list[str] = []
    uninterrupted = ChunkWriter(envelope, whole.append)
    replay(uninterrupted, recorded.calls)
    uninterrupted.close()
    size_bound = [m for m in whole[:-1] if len(parse_chunk(m).orders) < MAX_CHUNK_ORDERS]
    assert size_bound, "chunks that the size limit ends, not the order limit"

    cuts = sorted(random.Random(3).sample(range(1, len(recorded.calls)), 60))
    held_somewhere = False
    for cut in cuts:
        before: list[str] = []
        dying = ChunkWriter(envelope, before.append)
        replay(dying, recorded.calls[:cut])
        pending, budget = dying.pending(), dying.budget
        held_somewhere = held_somewhere or bool(pending)
        after: list[str] = []
        resumed = ChunkWriter(envelope, after.append, first_number=dying.sent)
        resumed.restore(pending, budget)
        replay(resumed, recorded.calls[cut:])
        resumed.close()
        assert before + after == whole, f"cut after call {cut}"
    assert held_somewhere
