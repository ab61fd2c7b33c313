"""A small reader for the project's Bicep files, built on the tree-sitter Bicep grammar.

The Bicep compiler cannot be installed offline, so the infrastructure tests read the templates
with tree-sitter: syntax errors are found exactly, and resources, parameters, variables, modules
and outputs become plain Python values. Literals (strings without interpolation, numbers,
booleans, null, objects, arrays) become Python values; every other expression becomes an
:class:`Expr` holding its source text, which is what the tests compare against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


@dataclass(frozen=True, slots=True)
class Expr:
    """A Bicep expression that is not a literal, kept as its source text."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    body: dict[str, Any]
    existing: bool
    condition: str | None
    looped: bool
    path: Path

    @property
    def properties(self) -> dict[str, Any]:
        value = self.body.get("properties", {})
        return value if isinstance(value, dict) else {}

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.symbol} ({self.type})"


@dataclass(frozen=True, slots=True)
class Module:
    symbol: str
    source: str
    body: dict[str, Any]
    path: Path

    @property
    def params(self) -> dict[str, Any]:
        value = self.body.get("params", {})
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: str
    default: Any
    has_default: bool


@dataclass(slots=True)
class BicepFile:
    path: Path
    source: bytes
    tree: tree_sitter.Tree
    parameters: dict[str, Parameter] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    def syntax_errors(self) -> list[str]:
        """Line:column and text of every ERROR or MISSING node."""
        found: list[str] = []
        for node in _walk(self.tree.root_node):
            if node.type == "ERROR" or node.is_missing:
                row, column = node.start_point
                snippet = _text(node).splitlines()[0][:60] if _text(node) else node.type
                found.append(f"{self.path.relative_to(ROOT)}:{row + 1}:{column + 1}: {snippet!r}")
        return found

    def resources_of(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == resource_type.lower()]

    def resource(self, symbol: str) -> Resource:
        for candidate in self.resources:
            if candidate.symbol == symbol:
                return candidate
        raise KeyError(f"{self.path.name} declares no resource {symbol!r}")


def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def _named(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [c for c in node.children if c.is_named and c.type != "comment"]


def _string(node: tree_sitter.Node) -> str | Expr:
    if any(c.type == "interpolation" for c in node.children):
        return Expr(_text(node))
    parts: list[str] = []
    for child in node.children:
        if child.type == "string_content":
            parts.append(_text(child))
        elif child.type == "escape_sequence":
            parts.append(_text(child)[1:])
    return "".join(parts)


_SCALARS: dict[str, Callable[[str], Any]] = {
    "boolean": lambda text: text == "true",
    "number": int,
    "null": lambda _text: None,
}


def _object(node: tree_sitter.Node) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for prop in (c for c in node.children if c.type == "object_property"):
        key_node, *rest = _named(prop)
        key = _string(key_node) if key_node.type == "string" else _text(key_node)
        result[str(key)] = value(rest[-1]) if rest else None
    return result


def value(node: tree_sitter.Node) -> Any:
    """The Python value of a Bicep expression node (an Expr when it is not a literal)."""
    kind = node.type
    if kind == "object":
        return _object(node)
    if kind == "array":
        return [value(c) for c in _named(node)]
    if kind == "string":
        return _string(node)
    if kind in _SCALARS:
        return _SCALARS[kind](_text(node))
    if kind == "parenthesized_expression" and len(_named(node)) == 1:
        return value(_named(node)[0])
    return Expr(_text(node))


def _declaration_body(
    node: tree_sitter.Node,
) -> tuple[dict[str, Any], str | None, bool]:
    """(body, condition, looped) of a resource or module declaration's value."""
    condition: str | None = None
    looped = False
    target = _named(node)[-1]
    if target.type == "for_statement":
        looped = True
        target = _named(target)[-1]
    if target.type == "if_statement":
        condition_node, target = _named(target)[0], _named(target)[-1]
        condition = _text(condition_node)
    body = value(target)
    return (body if isinstance(body, dict) else {}), condition, looped


def parse(path: Path) -> BicepFile:
    source = path.read_bytes()
    tree = _parser().parse(source)
    bicep = BicepFile(path=path, source=source, tree=tree)
    for node in _walk(tree.root_node):
        if node.type == "comment":
            bicep.comments.append(_text(node))
    for node in tree.root_node.children:
        named = _named(node)
        if node.type == "parameter_declaration":
            name, type_node, *default = named
            bicep.parameters[_text(name)] = Parameter(
                name=_text(name),
                type=_text(type_node),
                default=value(default[0]) if default else None,
                has_default=bool(default),
            )
        elif node.type == "variable_declaration":
            bicep.variables[_text(named[0])] = value(named[-1])
        elif node.type == "output_declaration":
            bicep.outputs[_text(named[0])] = value(named[-1])
        elif node.type == "resource_declaration":
            type_text = str(_string(named[1]))
            resource_type, _, api_version = type_text.partition("@")
            body, condition, looped = _declaration_body(node)
            bicep.resources.append(
                Resource(
                    symbol=_text(named[0]),
                    type=resource_type,
                    api_version=api_version,
                    body=body,
                    existing=any(c.type == "existing" for c in node.children),
                    condition=condition,
                    looped=looped,
                    path=path,
                )
            )
        elif node.type == "module_declaration":
            body, _, _ = _declaration_body(node)
            bicep.modules.append(
                Module(symbol=_text(named[0]), source=str(_string(named[1])), body=body, path=path)
            )
    return bicep


def bicep_paths() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def load(relative: str) -> BicepFile:
    """A parsed file under infra/, e.g. ``load("modules/storage.bicep")`` (cached)."""
    return parse(INFRA / relative)


def all_resources(*, include_existing: bool = False) -> list[Resource]:
    return [
        resource
        for path in bicep_paths()
        for resource in load(path.relative_to(INFRA).as_posix()).resources
        if include_existing or not resource.existing
    ]
