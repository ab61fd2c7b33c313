"""The run command's local.settings.json handling: created from the sample, stale copies flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localdev.run import ensure_local_settings


def write(path: Path, values: dict[str, str]) -> None:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))


def test_missing_file_is_created_from_the_sample(tmp_path: Path) -> None:
    write(tmp_path / "local.settings.json.sample", {"A": "1", "B": "2"})
    created = ensure_local_settings(tmp_path)
    assert json.loads(created.read_text())["Values"] == {"A": "1", "B": "2"}


def test_a_stale_copy_is_kept_and_its_missing_settings_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "local.settings.json.sample", {"A": "1", "B": "2", "C": "3"})
    write(tmp_path / "local.settings.json", {"A": "mine"})
    ensure_local_settings(tmp_path)
    assert json.loads((tmp_path / "local.settings.json").read_text())["Values"] == {"A": "mine"}
    assert "lacks B, C" in capsys.readouterr().err


def test_a_current_copy_gets_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "local.settings.json.sample", {"A": "1"})
    write(tmp_path / "local.settings.json", {"A": "2", "EXTRA": "x"})
    ensure_local_settings(tmp_path)
    assert capsys.readouterr().err == ""
