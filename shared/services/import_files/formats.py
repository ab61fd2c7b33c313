"""Format detection: which reader a file name calls for, and the checks on the start of a file
that refuse it as a whole (empty, binary, UTF-16, not UTF-8) before any row is read."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Final

CSV_HEADER: Final = ("external_id", "customer_id", "sku", "quantity", "unit_price", "currency")
CSV_COLUMNS: Final = len(CSV_HEADER)
SNIFF_BYTES: Final = 64 * 1024


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def file_format_for(name: str) -> FileFormat | None:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return FileFormat.CSV
    if lowered.endswith(".jsonl"):
        return FileFormat.JSONL
    return None


class FileRejectedError(Exception):
    """The whole file cannot be read; ``reason`` says why (shown in the status and report)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sniff(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Check the start of the file and give back all of it as blocks. Raises
    FileRejectedError for files that cannot be read at all."""
    iterator = iter(blocks)
    head = b""
    exhausted = False
    while len(head) < SNIFF_BYTES:
        block = next(iterator, None)
        if block is None:
            exhausted = True
            break
        head += block
    if not head:
        raise FileRejectedError("the file is empty (0 bytes)")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileRejectedError("the file is UTF-16; save it as UTF-8")
    if b"\x00" in head[:SNIFF_BYTES]:
        raise FileRejectedError("the file is binary, not text (it contains NUL bytes)")
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        text = decoder.decode(head[:SNIFF_BYTES], final=exhausted and len(head) <= SNIFF_BYTES)
    except UnicodeDecodeError as error:
        raise FileRejectedError(
            f"the file is not UTF-8 text (invalid byte at offset {error.start}; Latin-1 or "
            "another code page?); save it as UTF-8"
        ) from None
    if not text.lstrip("\ufeff").strip():
        raise FileRejectedError("the file is empty (only whitespace)")

    def chained() -> Iterator[bytes]:
        yield head
        yield from iterator

    return chained()
