"""Zip the function app for a Flex Consumption deployment (remote build installs requirements.txt).

Everything at the repository root goes in except what ``.funcignore`` excludes (the same rules
``func`` and ``azd`` apply), virtual environments and byte code.

    python infra/scripts/package_app.py /tmp/orderflow.zip
"""

from __future__ import annotations

import fnmatch
import os
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALWAYS_EXCLUDED = (".venv*", "__pycache__", "*.pyc", ".git", "node_modules")


def _patterns(root: Path) -> list[str]:
    funcignore = root / ".funcignore"
    lines = funcignore.read_text(encoding="utf-8").splitlines() if funcignore.exists() else []
    patterns = [line.strip().strip("/") for line in lines]
    return [p for p in patterns if p and not p.startswith("#")] + list(ALWAYS_EXCLUDED)


def _excluded(relative: Path, patterns: list[str]) -> bool:
    text = relative.as_posix()
    for pattern in patterns:
        if "/" in pattern:
            if fnmatch.fnmatch(text, pattern) or text.startswith(pattern + "/"):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in relative.parts):
            return True
    return False


def _files(root: Path, patterns: list[str]) -> list[Path]:
    """The files to package, sorted; an excluded folder is not entered (``.venv`` and
    ``node_modules`` hold tens of thousands of files)."""
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = [
            name for name in subfolders if not _excluded((here / name).relative_to(root), patterns)
        ]
        found.extend(
            path
            for name in files
            if not _excluded((path := here / name).relative_to(root), patterns)
        )
    return sorted(found)


def package(root: Path, target: Path) -> list[str]:
    """Write the zip and return the archived paths."""
    patterns = _patterns(root)
    names: list[str] = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _files(root, patterns):
            if path == target:
                continue
            relative = path.relative_to(root)
            archive.write(path, relative.as_posix())
            names.append(relative.as_posix())
    for required in ("function_app.py", "host.json", "requirements.txt"):
        if required not in names:
            raise SystemExit(f"package: {required} is missing from the package")
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: package_app.py <target.zip>\n")
        return 2
    target = Path(argv[1]).resolve()
    names = package(ROOT, target)
    sys.stdout.write(f"package: {len(names)} files -> {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
