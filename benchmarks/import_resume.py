"""A file pass killed at about half of a 1,000,000-row file, and resumed: rows read again.

    .venv/bin/python -m benchmarks.import_resume [--quick] [--rows N]

Against a local stack of its own (Azurite, the Cosmos DB stand-in): the standard two-line
import file (``benchmarks/imports.generate``) with a bad row every 10,000 rows is uploaded; the
file pass runs in a process of its own (``tests/fixtures/file_pass.py``) and is SIGKILLed once
it has judged half the file (wherever that falls between two checkpoints); the reconciliation
then finds the run stuck and the file pass of its event resumes it. Figures:

- rows read again: the furthest row the killed pass had judged minus the row the resumed pass
  started at; the floor is one chunk's worth of rows (the chunk size the pass used, in rows),
  and the goal is less than that: the pass checkpoints after every batch of text (about
  1,450 rows of this file), keeping the orders held for the next chunk in its resume log;
- rows lost or listed twice: every accepted row in exactly one chunk number (chunk numbers
  0..n-1, a number sent twice only with the same content), every rejected row once in the
  report, the run item's ``rowsRead``, ``fileRejected`` and ``chunksTotal`` those of a scan of
  the whole file (goal 0);
- chunks sent again by the resumed pass (the last checkpoint's; goal at most 1).

The chunk pass is not run (a million orders in the stand-in would take hours; the integration
test ``tests/integration/test_import_kill_resume.py`` runs it on a smaller file).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.local_app import configure_this_process, running_stack, stop_on_sigterm
from benchmarks.table import Figure, add_arguments, report

FULL_ROWS = 1_000_000
QUICK_ROWS = 100_000
BAD_EVERY = 10_000
CONTAINER = "order-imports-bench"
HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"


def generate(path: Path, rows: int) -> None:
    """``benchmarks/imports.generate``'s file, with every ``BAD_EVERY``-th row's quantity not a
    number (its order is rejected with it)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for i in range(rows):
            order = i // 2
            quantity = "x" if i % BAD_EVERY == BAD_EVERY - 1 else str(1 + i % 7)
            out.write(
                f"EXT-{order:08d},cust-{order % 5000:05d},SKU-{i % 200:04d},"
                f"{quantity},{(i * 37) % 100000 / 100:.2f},EUR\n"
            )


def run(rows: int) -> list[Figure]:
    from shared.clients import get_blob_service
    from shared.names import REJECTED_ROWS_BLOB_CONTAINER
    from shared.repositories.import_storage import report_name
    from shared.services.import_files import MAX_CHUNK_ORDERS, FileFormat, parse_chunk
    from tests.fixtures.file_pass import kill_at_half, verify

    with (
        tempfile.TemporaryDirectory(prefix="orderflow-bench-resume-") as directory,
        running_stack(Path(directory)) as stack,
    ):
        workdir = Path(directory)
        settings = stack.app_settings()
        configure_this_process(settings)
        name = f"resume-{uuid.uuid4().hex[:8]}.csv"
        path = workdir / name
        generate(path, rows)
        service = get_blob_service()
        service.create_container(CONTAINER)
        with path.open("rb") as source:
            service.get_blob_client(CONTAINER, name).upload_blob(source, overwrite=True)
        print(f"uploaded {rows:,} rows ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
        started = time.monotonic()
        result = kill_at_half(
            settings,
            CONTAINER,
            name,
            f"bench-{uuid.uuid4().hex[:10]}",
            data_rows=rows,
            workdir=workdir,
            log=lambda text: print(text, flush=True),
        )
        print(
            f"resumed at row {result.checkpoint_row:,} and finished in "
            f"{result.resumed_seconds:.1f} s ({time.monotonic() - started:.1f} s in all); "
            f"{result.rows_read_again:,} rows read again, {result.resent_chunks} chunk(s) "
            "sent again",
            flush=True,
        )
        data = (
            service.get_blob_client(REJECTED_ROWS_BLOB_CONTAINER, report_name(name))
            .download_blob()
            .readall()
        )
        checked = verify(name, path, FileFormat.CSV, result, data)
        for problem in checked.problems:
            print(f"PROBLEM: {problem}", flush=True)
        # One chunk's worth of rows: the orders a chunk holds (MAX_CHUNK_ORDERS, the limit
        # that fills this file's chunks) times its rows per order, as the chunks sent show.
        sizes = sorted(
            sum(len(order.rows) for order in parse_chunk(message).orders)
            for message in result.messages
        )
        rows_per_chunk = sizes[len(sizes) // 2]
        print(
            f"{checked.chunks} chunks, {checked.rows_in_chunks:,} rows in them, "
            f"{checked.reported:,} rows reported; {rows_per_chunk:,} rows a chunk (median; "
            f"{MAX_CHUNK_ORDERS:,} orders)",
            flush=True,
        )
        return [
            Figure(
                f"rows re-read after a kill at 50%, {rows:,} rows",
                result.rows_read_again,
                rows_per_chunk,
                "rows",
                1.0,
            ),
            Figure(
                "kill at 50%: rows lost or listed twice",
                len(checked.problems),
                0,
                "rows",
                0,
                goal_on="value",
            ),
            Figure(
                "kill at 50%: chunks sent again",
                result.resent_chunks,
                1,
                "chunks",
                1,
                goal_on="value",
            ),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--rows", type=int, default=None, help="rows of the file")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    report(run(rows), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
