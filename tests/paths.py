"""The repository root, for tests at any depth (tests/unit/<package>/test_<module>.py): a test
that moves to another folder keeps finding the files it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
