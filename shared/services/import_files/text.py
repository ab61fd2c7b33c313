"""Byte blocks to lines of text: decoding (UTF-8, an optional BOM, bytes that are not UTF-8
later in the file kept as surrogates so they reject their row), and lines bounded by
:data:`MAX_LINE_CHARS`, so one endless line is never held whole."""

from __future__ import annotations

import bisect
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


def text_stream(blocks: Iterator[bytes], *, at_start: bool = True) -> io.TextIOWrapper:
    # newline="" keeps line endings: csv needs them for quoted newlines and CRLF. Bytes that are
    # not UTF-8 after the first block become surrogates and reject their row. A BOM is one only
    # at the file's start (``at_start``: not for a pass resumed in the middle).
    return io.TextIOWrapper(
        io.BufferedReader(_BlockStream(blocks), buffer_size=256 * 1024),
        encoding="utf-8-sig" if at_start else "utf-8",
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


def sized_lines(text: io.TextIOWrapper) -> Iterator[tuple[str, int]]:
    """:func:`bounded_lines` with the byte length each line has in the file."""
    readline = text.readline
    limit = MAX_LINE_CHARS
    while True:
        line = readline(limit)
        if not line:
            return
        if len(line) == limit and line[-1] not in "\r\n":
            size = _nbytes(line)
            while True:
                rest = readline(limit)
                size += _nbytes(rest)
                if not rest or rest[-1] in "\r\n":
                    break
            yield OVERLONG, size
        else:
            yield line, _nbytes(line)


# str.splitlines also splits at these; readline (and csv) do not.
_ASCII_LINE_BREAKS_BEYOND_CR_LF: Final = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e")


def _nbytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


class LineOffsets:
    """Where recent lines start in the file, in bytes, for checkpoints: a resumed pass reads
    the blob from the byte where a line starts. Recorded a batch of lines at a time (the byte
    offset of its first line, and the true byte length of each line when a line was replaced
    by :data:`OVERLONG`); an offset is computed only when asked for (a checkpoint), so the
    scan itself pays one ``len`` a batch."""

    __slots__ = ("_batches", "_firsts", "first_byte", "next_line")

    def __init__(self, first_line: int = 1) -> None:
        self.first_byte = 0  # where the first line starts (3 after a BOM, or a resumed offset)
        # (first line number, byte offset of its start, lines, true byte lengths or None)
        self._batches: list[tuple[int, int, list[str], list[int] | None]] = []
        self._firsts: list[int] = []
        self.next_line = first_line

    def add(self, start: int, lines: list[str], lengths: list[int] | None) -> None:
        self._batches.append((self.next_line, start, lines, lengths))
        self._firsts.append(self.next_line)
        self.next_line += len(lines)

    @property
    def read_to(self) -> int:
        """Where the last recorded batch starts: how far the file is read, to within a batch
        (cheap, for deciding when a checkpoint is due)."""
        return self._batches[-1][1] if self._batches else self.first_byte

    def offset_of(self, line: int) -> int:
        """The byte offset where file line ``line`` starts (a line of a recorded batch, or the
        line after the last one recorded)."""
        index = bisect.bisect_right(self._firsts, line) - 1
        if index < 0:
            raise LookupError(f"line {line} is no longer recorded")
        first, start, lines, lengths = self._batches[index]
        count = line - first
        if count > len(lines):
            raise LookupError(f"line {line} was not read yet")
        if lengths is not None:
            return start + sum(lengths[:count])
        return start + _nbytes("".join(lines[:count]))  # one pass in C, not one call a line

    def forget_before(self, line: int) -> None:
        """Drop the batches that end before ``line`` (nothing before it is asked for again)."""
        keep = max(0, bisect.bisect_right(self._firsts, line) - 1)
        if keep:
            del self._batches[:keep], self._firsts[:keep]


def line_batches(
    text: io.TextIOWrapper, read_chars: int, offsets: LineOffsets | None = None
) -> Iterator[list[str]]:
    """The lines of the text, about ``read_chars`` characters of them at a time, split where
    ``readline`` splits (``\n``, ``\r\n``, ``\r``) and with their endings, as csv needs them.
    The last line gets a ``\n`` if it had none. A line longer than :data:`MAX_LINE_CHARS`
    (ending included) is never held whole: it becomes :data:`OVERLONG`. With ``offsets``,
    each batch is recorded there (the first line at ``offsets.first_byte``, read once the
    first block is)."""
    if offsets is not None:
        yield from _tracked_line_batches(text, read_chars, offsets)
        return
    limit = MAX_LINE_CHARS
    carry = ""
    skipping = False  # in the middle of an overlong line
    while chunk := text.read(read_chars):
        data = carry + chunk
        lines = _split(data)
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


def _split(data: str) -> list[str]:
    if data.isascii() and not any(map(data.__contains__, _ASCII_LINE_BREAKS_BEYOND_CR_LF)):
        return data.splitlines(keepends=True)  # the same lines, faster
    return io.StringIO(data, newline="").readlines()


def _tracked_line_batches(
    text: io.TextIOWrapper, read_chars: int, offsets: LineOffsets
) -> Iterator[list[str]]:
    """:func:`line_batches` with the byte offset of every batch recorded in ``offsets``."""
    limit = MAX_LINE_CHARS
    carry = ""
    skipping = False
    read = start = -1  # bytes read so far; where the next line to hand out starts
    while chunk := text.read(read_chars):
        if start < 0:
            read = start = offsets.first_byte  # known once the first block was read (a BOM)
        read += _nbytes(chunk)
        data = carry + chunk
        lines = _split(data)
        carry = "" if lines[-1].endswith("\n") else lines.pop()
        carry_bytes = _nbytes(carry)
        true_lengths: list[int] | None = None
        was_skipping = skipping
        if skipping and lines:
            skipping = False
            true_lengths = [_nbytes(line) for line in lines]
            lines[0] = OVERLONG
        if len(carry) > limit:
            carry, skipping = "", True
        if lines and max(map(len, lines)) > limit:
            true_lengths = true_lengths or [_nbytes(line) for line in lines]
            lines = [line if len(line) <= limit else OVERLONG for line in lines]
        if not lines:
            continue  # all of it is still the overlong line that began at ``start``
        end = read - carry_bytes  # where the line after this batch starts
        if true_lengths is not None and was_skipping:
            true_lengths[0] = end - start - sum(true_lengths[1:])
        offsets.add(start, lines, true_lengths)
        start = end
        yield lines
    if skipping:
        offsets.add(start, [OVERLONG], [read - start])
        yield [OVERLONG]
    elif carry:
        last = carry if carry.endswith("\r") else carry + "\n"
        offsets.add(start, [last], [read - start])
        yield [last]


class LineFeed:
    """The lines of :func:`line_batches`, taken a batch at a time or a line at a time, with
    lines taken but not used put back in front. ``taken`` counts the lines handed out: the
    file line number of the last one."""

    __slots__ = ("_back", "_batches", "_next", "taken")

    def __init__(self, batches: Iterator[list[str]], taken: int = 0) -> None:
        self._batches = batches
        self._back: list[str] = []  # put back, in reverse order: the next line is the last item
        self._next: list[str] | None = None  # the next batch, once peeked at
        self.taken = taken  # a resumed pass starts after the lines before its first

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
