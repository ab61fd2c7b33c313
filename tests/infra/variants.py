"""Copies of infra/ specialised for one set of boolean parameters (a check variant), so checkov,
which does not evaluate Bicep expressions, judges what each deployment really contains.

A variant is a parameters file in tests/infra/variants/ (``{"vnetEnabled": true}``). For every
boolean parameter it names, in every template:
- ``name ? a : b`` (and ``!name ? a : b``) becomes the chosen branch;
- a resource or module declared ``if (name)`` is dropped when false, unconditional when true;
- a ``checkov:skip`` whose reason starts with ``<name>=false`` is dropped when the value is true:
  such a suppression is allowed only where the parameter is false, and the check must pass
  without it where it is true.
Modules therefore name the parameter exactly as main.bicep does (``vnetEnabled``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

from tests.infra.bicep import INFRA, ROOT

VARIANTS = ROOT / "tests" / "infra" / "variants"


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    values: dict[str, bool]


def variants() -> list[Variant]:
    found: list[Variant] = []
    for path in sorted(VARIANTS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        values = {str(k): v for k, v in data.items() if isinstance(v, bool)}
        assert values, f"{path.name}: no boolean parameter"
        found.append(Variant(path.stem, values))
    return found


def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def _condition_value(node: tree_sitter.Node, values: dict[str, bool]) -> bool | None:
    """The value of a condition that is ``name``, ``!name`` or ``(name)``; None otherwise."""
    text = re.sub(r"\s+", "", _text(node))
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    negated = text.startswith("!")
    name = text.lstrip("!")
    if name not in values:
        return None
    return values[name] != negated


def _edits(
    node: tree_sitter.Node, values: dict[str, bool], out: list[tuple[int, int, bytes]]
) -> None:
    if node.type == "ternary_expression":
        named = [c for c in node.children if c.is_named]
        chosen = _condition_value(named[0], values)
        if chosen is not None:
            branch = named[1] if chosen else named[2]
            out.append((node.start_byte, node.end_byte, branch.text or b""))
            return
    if node.type in {"resource_declaration", "module_declaration"}:
        statement = next((c for c in node.children if c.type == "if_statement"), None)
        if statement is not None:
            condition = next(c for c in statement.children if c.is_named)
            chosen = _condition_value(condition, values)
            if chosen is False:
                out.append((node.start_byte, node.end_byte, b""))
                return
            if chosen is True:
                body = [c for c in statement.children if c.is_named][-1]
                out.append((statement.start_byte, body.start_byte, b""))
    for child in node.children:
        _edits(child, values, out)


def specialise(source: str, values: dict[str, bool]) -> str:
    data = source.encode("utf-8")
    tree = _parser().parse(data)
    edits: list[tuple[int, int, bytes]] = []
    _edits(tree.root_node, values, edits)
    for start, end, replacement in sorted(edits, reverse=True):
        data = data[:start] + replacement + data[end:]
    text = data.decode("utf-8")
    for name, value in values.items():
        if value:
            text = re.sub(rf"[ \t]*//\s*checkov:skip=\S+?:\s*{name}=false.*\n", "", text)
    return text


def render(variant: Variant, destination: Path) -> Path:
    """infra/ specialised for the variant, under ``destination/<variant name>``."""
    target = destination / variant.name
    shutil.copytree(INFRA, target)
    for path in target.rglob("*.bicep"):
        path.write_text(specialise(path.read_text(encoding="utf-8"), variant.values), "utf-8")
    return target
