"""docs/RELIABILITY.md stays true: every test it names exists, every case it lists names one,
and the delivery settings it quotes are the ones host.json and shared/clients.py use."""

from __future__ import annotations

import json
import re

from shared import clients
from tests.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "RELIABILITY.md"
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
QUOTED_HOST_SETTINGS = {
    ("extensions", "http"): (
        "maxConcurrentRequests",
        "maxOutstandingRequests",
        "dynamicThrottlesEnabled",
    ),
    ("extensions", "queues"): (
        "maxDequeueCount",
        "visibilityTimeout",
        "batchSize",
        "newBatchThreshold",
    ),
    ("extensions", "serviceBus"): (
        "autoCompleteMessages",
        "maxAutoLockRenewalDuration",
        "maxConcurrentCalls",
        "prefetchCount",
    ),
    (): ("functionTimeout",),
}


def test_every_test_the_document_names_exists() -> None:
    references = TEST_REFERENCE.findall(DOC.read_text(encoding="utf-8"))
    assert len(references) > 30
    missing = []
    for path, name in references:
        source = REPO_ROOT / path
        defined = source.is_file() and re.search(
            rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.MULTILINE
        )
        if not defined:
            missing.append(f"{path}::{name}")
    assert missing == []


def test_every_case_names_the_test_that_proves_it() -> None:
    unproved = []
    proving_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            proving_table = False
            continue
        if line.startswith("| case |"):
            proving_table = "proved by" in line
            continue
        if proving_table and not line.startswith("|---") and not TEST_REFERENCE.search(line):
            unproved.append(line)
    assert unproved == []


def test_the_quoted_delivery_settings_are_the_ones_in_use() -> None:
    doc = DOC.read_text(encoding="utf-8")
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    for path, names in QUOTED_HOST_SETTINGS.items():
        section = host
        for key in path:
            section = section[key]
        for name in names:
            quoted = json.dumps({name: section[name]})[1:-1]  # '"maxDequeueCount": 5'
            assert f"`{quoted}`" in doc, quoted
    assert f"`RETRY_TOTAL = {clients.RETRY_TOTAL}`" in doc
    assert f"`RETRY_BACKOFF_MAX = {clients.RETRY_BACKOFF_MAX}`" in doc


def test_the_readme_links_the_document() -> None:
    assert "docs/RELIABILITY.md" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")
