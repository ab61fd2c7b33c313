"""A scan resumed from any safe point gives the verdicts of the uninterrupted scan: byte offsets
exact for multi-byte UTF-8, CRLF, a BOM, quoted newlines and overlong lines; row numbers still
the file's line numbers; the order keys before the cut restored from the keys themselves."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.services.import_files import (
    MAX_LINE_CHARS,
    FileFormat,
    ImportedOrder,
    ImportScanner,
    Rejection,
    ScanCounts,
)
from shared.services.import_files.scanner import ScanStart

HEADER = "external_id,customer_id,sku,quantity,unit_price,currency"


@dataclass
class Recorder:
    """A sink that records verdicts by row (both ways of adding orders)."""

    accepted: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def add(self, order: ImportedOrder) -> None:
        self.accepted.extend((row, order.external_id) for row in order.rows)

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        self.accepted.extend(
            (first_row + index, line.split(",", 1)[0]) for index, line in enumerate(lines[:count])
        )


@dataclass(frozen=True)
class Cut:
    line: int
    offset: int
    counts: ScanCounts
    keys: list[str]


def blocks(data: bytes, size: int = 997) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def cuts_of(data: bytes, file_format: FileFormat, read_chars: int) -> tuple[Recorder, list[Cut]]:
    recorder = Recorder()
    scanner = ImportScanner(
        file_format, recorder, recorder.rejected.append, read_chars=read_chars, track=True
    )
    cuts: list[Cut] = []
    keys: list[str] = []

    def safe_point(line: int) -> None:
        journal = scanner.key_journal
        assert journal is not None
        keys.extend(journal.take_before(line))
        counts = scanner.counts
        cuts.append(
            Cut(
                line,
                scanner.offset_of(line),
                ScanCounts(counts.rows_read, counts.accepted, counts.rejected, counts.orders),
                list(keys),
            )
        )

    scanner.scan(blocks(data), safe_point=safe_point)
    return recorder, cuts


def line_starts(data: bytes) -> dict[int, int]:
    """Byte offset of every line start (line 1 after a BOM), splitting as readline does."""
    text = data.decode("utf-8", "surrogateescape")
    offset = 3 if text.startswith("\ufeff") else 0
    text = text.removeprefix("\ufeff")
    starts = {}
    for number, line in enumerate(io.StringIO(text, newline="").readlines(), start=1):
        starts[number] = offset
        offset += len(line.encode("utf-8", "surrogateescape"))
    starts[len(starts) + 1] = offset
    return starts


def check_every_cut(data: bytes, file_format: FileFormat, read_chars: int = 64) -> int:
    whole, cuts = cuts_of(data, file_format, read_chars)
    starts = line_starts(data)
    for cut in cuts:
        assert cut.offset == starts[cut.line], f"line {cut.line}"
        assert data[cut.offset : cut.offset + 3] != b"\xef\xbb\xbf"
        rest = Recorder()
        scanner = ImportScanner(file_format, rest, rest.rejected.append, read_chars=read_chars)
        counts = scanner.scan(
            blocks(data[cut.offset :]), ScanStart(cut.offset, cut.line, cut.counts, cut.keys)
        )
        before_acc = [item for item in whole.accepted if item[0] < cut.line]
        before_rej = [item for item in whole.rejected if item.row < cut.line]
        assert before_acc + rest.accepted == whole.accepted
        assert sorted(before_rej + rest.rejected, key=lambda r: r.row) == sorted(
            whole.rejected, key=lambda r: r.row
        )
        assert counts.rows_read == counts.accepted + counts.rejected
        assert (counts.rows_read, counts.rejected) == (
            len(whole.accepted) + len(whole.rejected),
            len(whole.rejected),
        )
    return len(cuts)


def hostile_csv(newline: str, bom: bool) -> bytes:
    rows = [HEADER]
    for i in range(120):
        rows.append(f"E{i},c1,SKU-{i % 3},1,1.00,EUR")
        if i % 7 == 0:
            rows.append(f"E{i},c1,SKU-9,2,2.00,EUR")  # a second line of the order
        if i % 11 == 3:
            rows.append(f'E{i}x,c1,"SKU\n-ü",1,1.00,EUR')  # quoted newline, multi-byte
        if i % 13 == 5:
            rows.append(f"E{i}y,c€,SKU-1,1,1.00,EUR")  # multi-byte, rejected
        if i % 17 == 6:
            rows.append("E5,c1,SKU-1,1,1.00,EUR")  # a split order (E5 came before)
        if i % 19 == 8:
            rows.append("")  # a blank line
        if i == 60:
            rows.append("X" * (MAX_LINE_CHARS + 50))  # overlong
        if i == 100:
            rows.append("Y" * 50_000)  # overlong again: what follows is past the sniffed start
            rows.append("E100b,c1,SKU-1,1,1.00,EUR\udcff")  # not UTF-8 in the file
    text = newline.join(rows) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("read_chars", [64, 4096, 256 * 1024])
def test_a_csv_scan_resumed_at_any_cut_gives_the_same_verdicts(
    newline: str, bom: bool, read_chars: int
) -> None:
    cuts = check_every_cut(hostile_csv(newline, bom), FileFormat.CSV, read_chars)
    assert cuts >= (20 if read_chars == 64 else 1)


def test_a_jsonl_scan_resumed_at_any_line_gives_the_same_verdicts() -> None:
    lines = []
    for i in range(80):
        external = "DUP" if i in (3, 70) else f"J{i}"
        line = json.dumps(
            {
                "externalId": external,
                "customerId": "c1",
                "currency": "EUR",
                "lines": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "1.50"}],
            },
            ensure_ascii=False,
        )
        if i % 9 == 4:
            line = line.replace("SKU", "SKÜ")
        if i == 40:
            line = "{" + " " * (MAX_LINE_CHARS + 10) + "}"
        lines.append(line)
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    assert check_every_cut(data, FileFormat.JSONL) == len(lines) - 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["E1", "E2", "E3", "E4", '"E5"', "É6", "=E7"]),
            st.sampled_from(["c1", "c2", "ç3"]),
            st.sampled_from(["SKU-1", "SKU-2", '"SK\nU"']),
            st.sampled_from(["1", "2", "x"]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_generated_csv_files_resume_at_any_cut(
    rows: list[tuple[str, str, str, str]], newline: str
) -> None:
    body = newline.join(f"{e},{c},{s},{q},1.00,EUR" for e, c, s, q in rows)
    data = (HEADER + newline + body + newline).encode()
    check_every_cut(data, FileFormat.CSV, read_chars=64)


def verdicts_in_parts(data: bytes, file_format: FileFormat, parts: int, *, fast: bool) -> Recorder:
    from shared.services.import_files.order_keys import KeyPartition

    together = Recorder()
    for part in range(parts):
        scanner = ImportScanner(
            file_format,
            together,
            together.rejected.append,
            read_chars=64,
            fast_path=fast,
            partition=KeyPartition(part, parts) if parts > 1 else None,
        )
        scanner.scan(blocks(data))
    return together


@pytest.mark.parametrize("parts", [2, 3, 7])
@pytest.mark.parametrize("fast", [True, False])
def test_passes_over_parts_of_the_key_space_give_one_pass_verdicts(parts: int, fast: bool) -> None:
    clean = (
        HEADER
        + "\n"
        + "".join(f"E{i // 2},c{i // 2 % 3},SKU-{i % 2},1,1.00,EUR\n" for i in range(600))
        + "E7,c1,SKU-1,1,1.00,EUR\n"  # a split order at the end of a clean file
    ).encode()
    for data, file_format in (
        (clean, FileFormat.CSV),
        (hostile_csv("\r\n", True), FileFormat.CSV),
        (hostile_csv("\n", False), FileFormat.CSV),
    ):
        whole = verdicts_in_parts(data, file_format, 1, fast=True)
        split = verdicts_in_parts(data, file_format, parts, fast=fast)
        assert sorted(split.accepted) == sorted(whole.accepted)
        assert sorted(split.rejected, key=lambda r: (r.row, r.reason)) == sorted(
            whole.rejected, key=lambda r: (r.row, r.reason)
        )
        assert any("split order" in r.reason for r in split.rejected)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["E1", "E2", "E3", "E4", '"E5"', "É6", "=E7", ""]),
            st.sampled_from(["c1", "c2", "ç3"]),
            st.sampled_from(["SKU-1", "SKU-2", '"SK\nU"']),
            st.sampled_from(["1", "2", "x"]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(2, 5),
    st.booleans(),
)
def test_generated_files_judged_in_parts_get_one_pass_verdicts(
    rows: list[tuple[str, str, str, str]], parts: int, jsonl_format: bool
) -> None:
    if jsonl_format:
        data = "".join(
            json.dumps(
                {
                    "externalId": e.strip('"'),
                    "customerId": c,
                    "currency": "EUR",
                    "lines": [
                        {"sku": s, "quantity": int(q) if q.isdigit() else q, "unitPrice": "1"}
                    ],
                },
                ensure_ascii=False,
            )
            + "\n"
            for e, c, s, q in rows
        ).encode()
        file_format = FileFormat.JSONL
    else:
        body = "\n".join(f"{e},{c},{s},{q},1.00,EUR" for e, c, s, q in rows)
        data = (HEADER + "\n" + body + "\n").encode()
        file_format = FileFormat.CSV
    whole = verdicts_in_parts(data, file_format, 1, fast=True)
    split = verdicts_in_parts(data, file_format, parts, fast=True)
    assert sorted(split.accepted) == sorted(whole.accepted)
    assert sorted(split.rejected, key=lambda r: (r.row, r.reason)) == sorted(
        whole.rejected, key=lambda r: (r.row, r.reason)
    )
