#!/usr/bin/env python3
"""Copy the Swagger UI files the API reference serves from the pinned npm package into the app.

The function app package cannot run npm, so the files ship in ``shared/api_docs_assets/
swagger-ui-dist/`` (committed, byte for byte the package's). After changing the pinned
``swagger-ui-dist`` version in localdev/package.json, run ``make setup`` and then

    .venv/bin/python scripts/vendor_swagger_ui.py

``tests/unit/shared/test_api_docs.py`` fails while the copy and the installed package differ.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.api_docs import VENDOR_DIR, VENDOR_FILES  # noqa: E402

PACKAGE_DIR = ROOT / "localdev" / "node_modules" / "swagger-ui-dist"


def main() -> int:
    if not (PACKAGE_DIR / "package.json").is_file():
        sys.stderr.write(f"{PACKAGE_DIR} is missing: run `make setup` first\n")
        return 1
    if VENDOR_DIR.exists():
        shutil.rmtree(VENDOR_DIR)
    VENDOR_DIR.mkdir(parents=True)
    for name in VENDOR_FILES:
        shutil.copyfile(PACKAGE_DIR / name, VENDOR_DIR / name)
    size = sum((VENDOR_DIR / name).stat().st_size for name in VENDOR_FILES)
    sys.stdout.write(f"vendored {len(VENDOR_FILES)} files ({size} bytes) into {VENDOR_DIR}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
