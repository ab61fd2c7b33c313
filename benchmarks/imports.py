"""Import file throughput and memory: prints figures, asserts nothing.

    .venv/bin/python benchmarks/imports.py [--rows 1000000]

1. rows per second for parse + validate + chunk of an N-row CSV (default 1,000,000), beside a
   bare ``csv.reader`` pass over the same file in the same run (goal: at most 3x the bare pass);
2. peak memory of parse + validate + chunk for 10,000 and N rows, each in a fresh process
   (goal: a difference under 64 MiB, i.e. memory does not follow the file size);
3. queue messages per 10,000 rows.

The file is generated on disk (two lines per order, 5,000 customers, 200 SKUs) and read in
4 MiB blocks, as the pipeline reads the blob.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BLOCK = 4 * 1024 * 1024
HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"


def generate(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for i in range(rows):
            order = i // 2
            out.write(
                f"EXT-{order:08d},cust-{order % 5000:05d},SKU-{i % 200:04d},"
                f"{1 + i % 7},{(i * 37) % 100000 / 100:.2f},EUR\n"
            )


def blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            yield block


def bare_pass(path: Path) -> float:
    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as source:
        for _ in csv.reader(source):
            pass
    return time.perf_counter() - started


class _MemoryStore:
    """The run item and the report and resume-log blobs of a file pass, in memory: each
    checkpoint is written (and won), each append returns the blob's new length."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.checkpoints = 0

    def checkpoint(self, *_: object) -> bool:
        self.checkpoints += 1
        return True

    def append(self, name: str, data: bytes) -> int:
        self.sizes[name] = self.sizes.get(name, 0) + len(data)
        return self.sizes[name]


def pipeline_pass(path: Path) -> tuple[float, int, int, _MemoryStore]:
    """The file pass as the import function runs it (``ImportPipeline._file_pass``): tracked
    line offsets and order keys, a checkpoint after every batch of text (the resume-log line
    with the keys, the chunks packed since the last one and the orders held for the next, the
    report's rejected rows), one pass per part of the order-key space; the run item, blobs and
    queue are in memory, so only the pass's own work is timed."""
    from typing import Any, cast

    from shared.services.import_checkpoints import Checkpoint, FilePassCheckpoints
    from shared.services.import_files import FileFormat, ImportScanner
    from shared.services.import_files.chunks import MAX_CHUNK_BYTES, MAX_CHUNK_ORDERS
    from shared.services.import_files.order_keys import KeyPartition, bytes_per_order, key_parts

    messages = 0

    def send(message: str) -> None:
        nonlocal messages
        messages += 1

    store = _MemoryStore()
    started = time.perf_counter()
    parts = key_parts(path.stat().st_size, bytes_per_order(next(blocks(path)), csv_format=True))
    start = Checkpoint.at_start(report_end=0, parts=parts)
    while True:
        checkpoints = FilePassCheckpoints(
            runs=cast(Any, store),
            reports=cast(Any, store),
            send=send,
            import_id=path.name,
            run_id="bench",
            owner="bench",
            report="report",
            log="resume-log",
            start=start,
            now=lambda: "2026-12-04T00:00:00Z",
            max_chunk_bytes=MAX_CHUNK_BYTES,
            max_chunk_orders=MAX_CHUNK_ORDERS,
        )
        partition = KeyPartition(start.part, parts) if parts > 1 else None
        scanner = ImportScanner(
            FileFormat.CSV, checkpoints, checkpoints.reject, track=True, partition=partition
        )
        offsets = scanner.offsets
        assert offsets is not None  # noqa: S101 - tracked
        checkpoints.attach(offsets, scanner.key_journal)
        scanner.scan(blocks(path), None, checkpoints.safe_point)
        if start.part + 1 < parts:
            start = checkpoints.end_part()
            continue
        checkpoints.finish(path.stat().st_size, offsets.next_line)
        break
    elapsed = time.perf_counter() - started
    return elapsed, checkpoints.last.accepted, messages, store


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; getrusage's
    ru_maxrss does not (it keeps the high-water mark of the process that forked it)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def peak_memory_child(path: Path, rows: int) -> None:
    """Run in a fresh process: scan the file, print the peak RSS (MiB) as JSON."""
    import shared.services.import_files  # noqa: F401 - imports before the baseline

    before = peak_rss_mib()
    _, accepted, messages, store = pipeline_pass(path)
    peak = peak_rss_mib()
    print(
        json.dumps(
            {
                "rows": rows,
                "peak_mib": peak,
                "before_mib": before,
                "accepted": accepted,
                "messages": messages,
                "checkpoints": store.checkpoints,
                "log_bytes": store.sizes.get("resume-log", 0),
            }
        )
    )


def measure_memory(directory: Path, rows: int) -> dict[str, float]:
    """Peak RSS of a fresh process scanning an N-row file (generated here, not in the child,
    so that the child's high-water mark is the scan's)."""
    path = directory / f"memory-{rows}.csv"
    generate(path, rows)
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(rows), "--path", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path.unlink()
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N passes each")
    parser.add_argument("--memory-child", type=int, default=None)
    parser.add_argument("--path", type=Path, default=None)
    args = parser.parse_args()
    if args.memory_child is not None:
        peak_memory_child(args.path, args.memory_child)
        return

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.csv"
        generate(path, args.rows)
        size_mib = path.stat().st_size / 2**20
        # Best of N, alternating: other work on the machine only ever adds time.
        bare, elapsed, accepted = float("inf"), float("inf"), 0
        for _ in range(max(1, args.repeat)):
            bare = min(bare, bare_pass(path))
            seconds, accepted, _, _ = pipeline_pass(path)
            elapsed = min(elapsed, seconds)
        small = measure_memory(Path(directory), 10_000)
        large = measure_memory(Path(directory), args.rows)
    print(f"file: {args.rows:,} rows, {size_mib:.1f} MiB")
    print(f"bare csv.reader:              {args.rows / bare:12,.0f} rows/s ({bare:.2f} s)")
    print(f"parse + validate + chunk:     {args.rows / elapsed:12,.0f} rows/s ({elapsed:.2f} s)")
    print(f"ratio to the bare pass:       {elapsed / bare:12.2f}x (goal <= 3x)")
    print(f"rows accepted:                {accepted:12,}")
    print(f"RSS before the scan:          {small['before_mib']:12.1f} MiB")
    print(f"peak RSS, 10,000 rows:        {small['peak_mib']:12.1f} MiB")
    print(f"peak RSS, {args.rows:,} rows: {large['peak_mib']:10.1f} MiB")
    print(
        f"difference:                   {large['peak_mib'] - small['peak_mib']:12.1f} MiB "
        "(goal < 64 MiB)"
    )
    print(f"queue messages per 10,000 rows: {small['messages'] * 10_000 / 10_000:10.1f}")
    print(f"queue messages, {args.rows:,} rows: {large['messages']:,.0f}")
    print(
        f"checkpoints, {args.rows:,} rows: {large['checkpoints']:,.0f} "
        f"(resume log {large['log_bytes'] / 2**20:.1f} MiB for the {size_mib:.1f} MiB file)"
    )


if __name__ == "__main__":
    main()
