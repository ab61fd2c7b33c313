"""checkov (in its own virtual environment, .venv-infra) scans every Bicep file offline and
reports no failed check, for each check variant (tests/infra/variants/*.json: the private network
off and on; checkov does not evaluate parameters, so tests/infra/variants.py specialises a copy of
infra/ per variant). Each suppression is inline, gives a reason and is still needed; one about
public network access applies only where vnetEnabled is false and says so."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA, ROOT, bicep_paths
from tests.infra.variants import Variant, render, variants

CHECKOV = ROOT / ".venv-infra" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"checkov:skip=(CKV2?_[A-Z0-9_]+):?(.*)")
MIN_REASON = 20
# Checks that ask for private endpoints or no public network access on a data service: with the
# private network (vnetEnabled=true) they pass, so their suppressions apply to false only.
PUBLIC_ACCESS_CHECKS = {
    "CKV_AZURE_35",  # storage default network action deny
    "CKV_AZURE_59",  # storage public access
    "CKV_AZURE_99",  # Cosmos DB network restriction
    "CKV_AZURE_101",  # Cosmos DB public network access
    "CKV_AZURE_109",  # Key Vault firewall
    "CKV_AZURE_189",  # Key Vault public network access
    "CKV_AZURE_193",  # Event Grid topic public network access
    "CKV_AZURE_204",  # Service Bus public network access
}
# Suppressions about public access that hold in every variant, and why.
KEPT_WITH_THE_PRIVATE_NETWORK = {
    # Event Grid reaches the storage account only through the trusted-services exception, which
    # publicNetworkAccess 'Disabled' removes; networkAcls deny every other caller.
    ("modules/storage.bicep", "CKV_AZURE_59"),
}
VARIANTS = variants()


@cache
def _scan() -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run scripts/bootstrap-infra.sh"
    with tempfile.TemporaryDirectory(prefix="orderflow-checkov-") as directory:
        for variant in VARIANTS:
            render(variant, Path(directory))
        completed = subprocess.run(
            [
                str(CHECKOV),
                "--directory",
                directory,
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
            timeout=300,
            check=False,
        )
    assert completed.stdout, f"checkov printed nothing:\n{completed.stderr}"
    data = json.loads(completed.stdout)
    assert isinstance(data, dict), f"checkov found nothing to scan: {data}"
    return data


def results(variant: Variant, kind: str) -> list[dict[str, Any]]:
    """Results of one variant, with file paths relative to its copy of infra/."""
    prefix = f"/{variant.name}/"
    found: list[dict[str, Any]] = []
    for entry in _scan()["results"].get(kind, []):
        path = entry["file_path"] if isinstance(entry, dict) else str(entry)
        if path.startswith(prefix) or f"/{variant.name}/" in path:
            if isinstance(entry, dict):
                found.append({**entry, "file_path": path.split(prefix, 1)[-1]})
            else:
                found.append(entry)
    return found


def counts(variant: Variant) -> dict[str, int]:
    return {
        kind: len(results(variant, f"{kind}_checks")) for kind in ("passed", "failed", "skipped")
    }


def test_there_is_a_variant_for_each_vnet_enabled_value() -> None:
    assert sorted(bool(v.values["vnetEnabled"]) for v in VARIANTS) == [False, True]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_checkov_parses_every_file(variant: Variant) -> None:
    assert results(variant, "parsing_errors") == []
    scanned = {
        r["file_path"]
        for kind in ("passed_checks", "failed_checks")
        for r in results(variant, kind)
    }
    assert scanned, "checkov scanned nothing"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_checkov_reports_no_failed_check(variant: Variant) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in results(variant, "failed_checks")
    ]
    assert failed == [], f"{variant.name}: {counts(variant)}"
    assert results(variant, "passed_checks"), "checkov ran no check at all"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_suppression_gives_a_reason(variant: Variant) -> None:
    for check in results(variant, "skipped_checks"):
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= MIN_REASON, f"{check['check_id']} on {check['resource']}: {reason!r}"


def test_every_inline_suppression_is_still_needed() -> None:
    """A skip comment whose check applies in no variant hides nothing and should go."""
    skipped = {
        (c["check_id"], c["file_path"].lstrip("/"))
        for variant in VARIANTS
        for c in results(variant, "skipped_checks")
    }
    stale: list[str] = []
    for path in bicep_paths():
        relative = path.relative_to(INFRA).as_posix()
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match and (match.group(1), relative) not in skipped:
                stale.append(f"{relative}: {match.group(1)}")
    assert stale == []


def test_public_access_suppressions_apply_only_without_the_private_network() -> None:
    """They say so (reason starts with vnetEnabled=false), so the vnet-enabled variant drops them
    and its checks must pass on their own."""
    wrong: list[str] = []
    for path in bicep_paths():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            relative = path.relative_to(INFRA).as_posix()
            if match and match.group(1) in PUBLIC_ACCESS_CHECKS:
                if (relative, match.group(1)) in KEPT_WITH_THE_PRIVATE_NETWORK:
                    continue
                if not match.group(2).strip().startswith("vnetEnabled=false"):
                    wrong.append(f"{path.relative_to(INFRA)}: {match.group(1)}")
    assert wrong == []
    enabled = next(v for v in VARIANTS if v.values.get("vnetEnabled"))
    kept = {
        (c["file_path"].lstrip("/"), c["check_id"])
        for c in results(enabled, "skipped_checks")
        if c["check_id"] in PUBLIC_ACCESS_CHECKS
    }
    assert kept <= KEPT_WITH_THE_PRIVATE_NETWORK


def test_no_suppression_outside_the_templates() -> None:
    for config in (".checkov.yaml", ".checkov.yml", "infra/.checkov.yaml", "infra/.checkov.yml"):
        assert not (ROOT / config).exists(), f"{config}: suppress inline, with a reason"
