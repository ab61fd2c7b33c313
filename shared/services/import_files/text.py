"""Byte blocks to lines of text: decoding (UTF-8, an optional BOM, bytes that are not UTF-8
later in the file kept as surrogates so they reject their row), and lines bounded by
:data:`MAX_LINE_CHARS`, so one endless line is never held whole."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Final

# A valid row is well under 300 characters; longer lines are refused without being held.
MAX_LINE_CHARS: Final = 16 * 1024
# Text is split into lines a block of this many characters at a time: small enough that a
# batch's lines and fields (some 8,000 string objects) stay in a core's L2 cache while they are
# judged column by column (four times this took 20% longer), large enough that the per-batch
# work is a small part of the pass.
READ_CHARS: Final = 64 * 1024
OVERLONG: Final = "\x00\n"  # stands in for a line longer than MAX_LINE_CHARS


class _BlockStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte blocks (no copy of the whole input)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(block)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def text_stream(blocks: Iterator[bytes]) -> io.TextIOWrapper:
    # newline="" keeps line endings: csv needs them for quoted newlines and CRLF. Bytes that are
    # not UTF-8 after the first block become surrogates and reject their row.
    return io.TextIOWrapper(
        io.BufferedReader(_BlockStream(blocks), buffer_size=256 * 1024),
        encoding="utf-8-sig",
        errors="surrogateescape",
        newline="",
    )


def bounded_lines(text: io.TextIOWrapper) -> Iterator[str]:
    """Lines of at most MAX_LINE_CHARS; a longer line is skipped and replaced by a marker."""
    readline = text.readline
    limit = MAX_LINE_CHARS
    while True:
        line = readline(limit)
        if not line:
            return
        if len(line) == limit and line[-1] not in "\r\n":
            while True:
                rest = readline(limit)
                if not rest or rest[-1] in "\r\n":
                    break
            yield OVERLONG
        else:
            yield line


# str.splitlines also splits at these; readline (and csv) do not.
_ASCII_LINE_BREAKS_BEYOND_CR_LF: Final = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e")


def line_batches(text: io.TextIOWrapper, read_chars: int) -> Iterator[list[str]]:
    """The lines of the text, about ``read_chars`` characters of them at a time, split where
    ``readline`` splits (``\n``, ``\r\n``, ``\r``) and with their endings, as csv needs them.
    The last line gets a ``\n`` if it had none. A line longer than :data:`MAX_LINE_CHARS`
    (ending included) is never held whole: it becomes :data:`OVERLONG`."""
    limit = MAX_LINE_CHARS
    carry = ""
    skipping = False  # in the middle of an overlong line
    while chunk := text.read(read_chars):
        data = carry + chunk
        if data.isascii() and not any(map(data.__contains__, _ASCII_LINE_BREAKS_BEYOND_CR_LF)):
            lines = data.splitlines(keepends=True)  # the same lines, faster
        else:
            lines = io.StringIO(data, newline="").readlines()
        carry = "" if lines[-1].endswith("\n") else lines.pop()  # may go on in the next chunk
        if skipping and lines:
            lines[0], skipping = OVERLONG, False  # the end of the overlong line
        if len(carry) > limit:
            carry, skipping = "", True
        if lines and max(map(len, lines)) > limit:
            lines = [line if len(line) <= limit else OVERLONG for line in lines]
        if lines:
            yield lines
    if skipping:
        yield [OVERLONG]
    elif carry:
        yield [carry if carry.endswith("\r") else carry + "\n"]


class LineFeed:
    """The lines of :func:`line_batches`, taken a batch at a time or a line at a time, with
    lines taken but not used put back in front. ``taken`` counts the lines handed out: the
    file line number of the last one."""

    __slots__ = ("_back", "_batches", "_next", "taken")

    def __init__(self, batches: Iterator[list[str]]) -> None:
        self._batches = batches
        self._back: list[str] = []  # put back, in reverse order: the next line is the last item
        self._next: list[str] | None = None  # the next batch, once peeked at
        self.taken = 0

    def _next_batch(self) -> list[str]:
        batch = self._next if self._next is not None else next(self._batches, [])
        self._next = None
        return batch

    def take_batch(self) -> list[str]:
        """The lines put back and the next batch."""
        if self._back:
            batch, self._back = self._back[::-1], []
            batch += self._next_batch()
        else:
            batch = self._next_batch()
        self.taken += len(batch)
        return batch

    def put_back(self, lines: list[str]) -> None:
        self._back.extend(reversed(lines))
        self.taken -= len(lines)

    def peek(self) -> str | None:
        if self._back:
            return self._back[-1]
        if self._next is None:
            self._next = next(self._batches, [])
        return self._next[0] if self._next else None

    def lines(self) -> Iterator[str]:
        while True:
            if not self._back:
                batch = self._next_batch()
                if not batch:
                    return
                self._back = batch[::-1]
            self.taken += 1
            yield self._back.pop()


CsvRecord = tuple[int, list[str] | None, str | None]
