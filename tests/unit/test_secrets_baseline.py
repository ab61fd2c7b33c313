"""The detect-secrets baseline (.secrets.baseline) holds nothing but public development values.

scripts/test.sh fails on any secret-like string the baseline does not list, so a real secret
could pass by being added to the baseline. These tests stop that: findings may only sit in
test and local-stack files, and those outside tests/ must be the published development keys
of the stand-ins (Azurite's account key, the Cosmos DB emulator's key) or the sample
settings' public webhook secret. Anything else must be removed, not baselined.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from localdev.stack.stack import AZURITE_ACCOUNT_KEY, COSMOS_EMULATOR_KEY
from smoke.__main__ import LOCAL_WEBHOOK_SECRET
from tests.paths import REPO_ROOT

BASELINE = REPO_ROOT / ".secrets.baseline"
TEST_FILES = "tests/"
LOCAL_STACK_FILES = ("localdev/", "local.settings.json.sample")
# The values the local stack publishes; detect-secrets stores each finding as a SHA-1.
PUBLIC_DEVELOPMENT_VALUES = (
    AZURITE_ACCOUNT_KEY,
    f"AccountKey={AZURITE_ACCOUNT_KEY}",  # as the Azure storage key detector reports it
    COSMOS_EMULATOR_KEY,
    LOCAL_WEBHOOK_SECRET,
)


def findings() -> list[tuple[str, dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = json.loads(BASELINE.read_text())["results"]
    return [(path, finding) for path, items in results.items() for finding in items]


def test_baselined_findings_are_only_in_test_and_local_stack_files() -> None:
    elsewhere = sorted(
        {path for path, _ in findings() if not path.startswith((TEST_FILES, *LOCAL_STACK_FILES))}
    )
    assert elsewhere == [], f"secrets baselined outside tests and the local stack: {elsewhere}"


def test_local_stack_findings_are_the_published_development_values() -> None:
    public = {
        hashlib.sha1(value.encode(), usedforsecurity=False).hexdigest()  # detect-secrets' digest
        for value in PUBLIC_DEVELOPMENT_VALUES
    }
    unknown = [
        f"{path}:{finding['line_number']} ({finding['type']})"
        for path, finding in findings()
        if path.startswith(LOCAL_STACK_FILES) and finding["hashed_secret"] not in public
    ]
    assert unknown == [], f"not a public development value: {unknown}"
    # The baseline is in use: the stand-ins' keys are in it.
    assert {finding["hashed_secret"] for _, finding in findings()} & public
