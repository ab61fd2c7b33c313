"""checkov (in its own virtual environment, .venv-infra) scans every Bicep file offline and
reports no failed check; each suppression is inline, gives a reason, and is still needed."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from typing import Any

from tests.infra.bicep import INFRA, ROOT, bicep_paths

CHECKOV = ROOT / ".venv-infra" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"checkov:skip=(CKV2?_[A-Z0-9_]+):?(.*)")
MIN_REASON = 20


@cache
def report() -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run scripts/bootstrap-infra.sh"
    completed = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(INFRA),
            "--framework",
            "bicep",
            "--skip-download",
            "--output",
            "json",
            "--compact",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.stdout, f"checkov printed nothing:\n{completed.stderr}"
    data = json.loads(completed.stdout)
    assert isinstance(data, dict), f"checkov found nothing to scan: {data}"
    return data


def results(kind: str) -> list[dict[str, Any]]:
    return list(report()["results"].get(kind, []))


def test_checkov_parses_every_file() -> None:
    assert results("parsing_errors") == []
    assert report()["summary"]["resource_count"] > 0


def test_checkov_reports_no_failed_check() -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in results("failed_checks")
    ]
    assert failed == []
    assert results("passed_checks"), "checkov ran no check at all"


def test_every_suppression_gives_a_reason() -> None:
    for check in results("skipped_checks"):
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= MIN_REASON, f"{check['check_id']} on {check['resource']}: {reason!r}"


def test_every_inline_suppression_is_still_needed() -> None:
    """A skip comment whose check no longer applies hides nothing and should go."""
    skipped = {(c["check_id"], c["file_path"].lstrip("/")) for c in results("skipped_checks")}
    stale: list[str] = []
    for path in bicep_paths():
        relative = path.relative_to(INFRA).as_posix()
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match and (match.group(1), relative) not in skipped:
                stale.append(f"{relative}: {match.group(1)}")
    assert stale == []


def test_no_suppression_outside_the_templates() -> None:
    for config in (".checkov.yaml", ".checkov.yml", "infra/.checkov.yaml", "infra/.checkov.yml"):
        assert not (ROOT / config).exists(), f"{config}: suppress inline, with a reason"
