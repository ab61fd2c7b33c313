"""How much memory an import costs the Functions host: peak RSS of the whole host process tree
(the local host, which loads and invokes the app as the worker does) while it imports a file,
over its idle RSS before the upload.

    .venv/bin/python -m benchmarks.import_host_memory [--quick]

Two files, uploaded to ``order-imports`` of a stack of its own, each reaching the host the way
it reaches it in Azure (a BlobCreated event in ``order-import-events``, delivered by the stack's
Event Grid stand-in; only a reference travels):

- a 200 MiB file with a wrong header, which the app rejects from its first block (``--quick``:
  20 MiB): with a blob trigger, the host read all of it into memory before the function ran
  (+245 MiB measured for this case, docs/IMPORTS.md);
- a 1,000,000-row CSV (43.8 MiB; ``--quick``: 100,000 rows): the whole file pass, every row
  validated and chunked.

The chunk pass (``create_imported_orders``) is disabled in this host (``AzureWebJobs.<name>.
Disabled``): the figure is the file pass, and half a million orders would take the Cosmos
stand-in minutes. Idle is measured after a warm-up import of a small file, so the app's
modules and clients are loaded on both sides of the comparison. RSS is sampled every 20 ms from
``/proc`` for the host and all its descendants. The goal: less than 64 MiB over idle.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.local_app import (
    configure_this_process,
    quiet_local_tls_warnings,
    running_host,
    running_stack,
    stop_on_sigterm,
)
from benchmarks.table import Figure, add_arguments, report

MIB = 1024 * 1024
GROWTH_GOAL_MIB = 64.0
WAIT_SECONDS = 600.0
SAMPLE_SECONDS = 0.02
HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and every process below it (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
            fields = stat.rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            statm = Path(f"/proc/{entry}/statm").read_text(encoding="ascii").split()
            rss[int(entry)] = int(statm[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(rss.get(pid, 0) for pid in tree)


class PeakSampler:
    """Samples the tree's RSS in a thread until stopped; keeps the peak."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.root))
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def wrong_header_file(path: Path, size: int) -> None:
    """A file the app refuses from its first block: a wrong header, then ``size`` bytes."""
    line = b"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z,0123456789\n"
    with path.open("wb") as out:
        out.write(b"wrong,header\n")
        written = 0
        block = line * (MIB // len(line))
        while written < size:
            out.write(block)
            written += len(block)


def rows_file(path: Path, rows: int) -> None:
    from benchmarks.imports import generate

    generate(path, rows)


def upload(path: Path, name: str) -> None:
    from shared.clients import get_blob_service
    from shared.names import IMPORTS_BLOB_CONTAINER

    with path.open("rb") as source:
        get_blob_service().get_blob_client(IMPORTS_BLOB_CONTAINER, name).upload_blob(
            source, overwrite=True, max_concurrency=2
        )


def wait_for_file_pass(name: str) -> dict[str, Any]:
    """The run once the file pass is done (the chunks are not processed here)."""
    from shared.repositories.import_runs import CosmosImportRunRepository

    runs = CosmosImportRunRepository()
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        stored = runs.read(name)
        document = stored.document if stored is not None else {}
        if document.get("state") == "failed" or document.get("chunksTotal") is not None:
            return document
        time.sleep(0.1)
    raise TimeoutError(f"the file pass of {name} did not finish in {WAIT_SECONDS:.0f} s")


def import_growth(host_pid: int, path: Path) -> tuple[float, dict[str, Any]]:
    """Peak growth (MiB) of the host tree over idle while it imports ``path``."""
    name = f"mem-{uuid.uuid4().hex[:8]}.csv"
    time.sleep(1.0)  # let the host settle after the previous import
    idle = tree_rss_bytes(host_pid)
    with PeakSampler(host_pid) as sampler:
        upload(path, name)
        document = wait_for_file_pass(name)
    return (sampler.peak - idle) / MIB, document


def measure(quick: bool) -> list[Figure]:
    stop_on_sigterm()
    quiet_local_tls_warnings()
    big_bytes = (20 if quick else 200) * MIB
    rows = 100_000 if quick else 1_000_000
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        wrong = workdir / "wrong-header.csv"
        wrong_header_file(wrong, big_bytes)
        many = workdir / "rows.csv"
        rows_file(many, rows)
        warm = workdir / "warm.csv"
        rows_file(warm, 1000)
        with running_stack(workdir / "stack") as stack:
            configure_this_process(stack.app_settings())
            disabled = {"AzureWebJobs.create_imported_orders.Disabled": "true"}
            with running_host(stack, workdir, env=disabled) as host:
                if host.process is None:
                    raise RuntimeError("the host did not start")
                pid = host.process.pid
                import_growth(pid, warm)  # loads the app's import modules and clients
                growth, document = import_growth(pid, wrong)
                print(
                    f"  {big_bytes // MIB} MiB, wrong header: {document.get('state')} "
                    f"({document.get('reason')}); host tree +{growth:.1f} MiB",
                    flush=True,
                )
                figures.append(
                    Figure(
                        f"host RSS growth: {big_bytes // MIB} MiB upload",
                        growth,
                        0.0,
                        "MiB",
                        GROWTH_GOAL_MIB,
                        "value",
                    )
                )
                growth, document = import_growth(pid, many)
                print(
                    f"  {rows:,} rows: {document.get('rowsRead')} read, "
                    f"{document.get('chunksTotal')} chunks; host tree +{growth:.1f} MiB",
                    flush=True,
                )
                figures.append(
                    Figure(
                        f"host RSS growth: {rows:,}-row import",
                        growth,
                        0.0,
                        "MiB",
                        GROWTH_GOAL_MIB,
                        "value",
                    )
                )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    report(measure(args.quick), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
