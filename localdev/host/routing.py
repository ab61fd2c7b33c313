"""HTTP route templates and the route table, with the Functions host's matching rules.

Templates use the ASP.NET Core syntax the host understands (the host builds ASP.NET ``Route``
objects from each ``httpTrigger`` binding, see ``WebScriptHostHttpRoutesManager`` in
Azure/azure-functions-host):

- ``{name}`` parameter; ``{name:int}``, ``{name:alpha}``, ``{name:guid}``, ... constraints
  (chained: ``{id:int:min(1)}``); ``{name?}`` optional; ``{name=default}`` default value;
  ``{*rest}`` / ``{**rest}`` catch-all (last segment only); complex segments such as
  ``{file}.{ext?}``; ``{{`` and ``}}`` are literal braces.
- Literal segments match case-insensitively; a trailing slash is ignored.
- Route values are the percent-decoded path segments (a catch-all keeps its slashes).

Precedence is the one ``WebJobsRouteBuilder.Build`` applies before the first-match walk
(azure-webjobs-sdk-extensions, ``RouteComparison``): segment by segment, a literal beats a
parameter, a parameter with more constraints beats one with fewer, literals compare
case-insensitively, and a longer template beats its prefix. Ties keep registration order.
A route whose template matches but whose methods do not is skipped, so a wrong method is a
404, as in Azure (Azure/azure-functions-host#10098); HEAD is not implied by GET (#11625).

Constraint semantics follow ``Microsoft.AspNetCore.Routing.Constraints`` (invariant culture);
``datetime``, ``decimal`` and ``double`` accept the common invariant formats, not every one
.NET parses.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final
from urllib.parse import unquote

INT32_RANGE: Final = (-(2**31), 2**31 - 1)
INT64_RANGE: Final = (-(2**63), 2**63 - 1)

_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_REAL = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_DECIMAL = re.compile(r"^\s*[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d*)?\s*$")
_GUID_HEX = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GUID = re.compile(rf"^(?:[0-9a-fA-F]{{32}}|{_GUID_HEX}|\{{{_GUID_HEX}\}}|\({_GUID_HEX}\))$")
_ALPHA = re.compile(r"^[a-z]*$", re.IGNORECASE)
_PARAMETER_NAME = re.compile(r"^[^{}/?*=:.\s][^{}/?*=:]*$")
_CONSTRAINT = re.compile(r"^(?P<name>[A-Za-z]+)(?:\((?P<args>.*)\))?$", re.DOTALL)


class RouteTemplateError(ValueError):
    """A route template the host would refuse to register."""


ConstraintCheck = Callable[[str], bool]


def _integer_in(bounds: tuple[int, int]) -> ConstraintCheck:
    def check(value: str) -> bool:
        return bool(_INTEGER.match(value)) and bounds[0] <= int(value) <= bounds[1]

    return check


def _is_bool(value: str) -> bool:
    return value.strip().lower() in {"true", "false"}


def _is_real(value: str) -> bool:
    return bool(_REAL.match(value)) and math.isfinite(float(value))


def _is_decimal(value: str) -> bool:
    if not _DECIMAL.match(value) or not any(ch.isdigit() for ch in value):
        return False
    try:
        Decimal(value.strip().replace(",", ""))
    except InvalidOperation:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def _int_args(name: str, args: Sequence[str], count: int) -> list[int]:
    if len(args) != count or not all(_INTEGER.match(arg) for arg in args):
        raise RouteTemplateError(f"constraint '{name}' takes {count} integer argument(s)")
    return [int(arg) for arg in args]


def _long_value(value: str) -> int | None:
    return int(value) if _integer_in(INT64_RANGE)(value) else None


def _no_args(check: ConstraintCheck) -> Callable[[str, list[str]], ConstraintCheck]:
    def factory(name: str, args: list[str]) -> ConstraintCheck:
        if args:
            raise RouteTemplateError(f"constraint '{name}' takes no arguments")
        return check

    return factory


def _min_length(name: str, args: list[str]) -> ConstraintCheck:
    (minimum,) = _int_args(name, args, 1)
    return lambda value: len(value) >= minimum


def _max_length(name: str, args: list[str]) -> ConstraintCheck:
    (maximum,) = _int_args(name, args, 1)
    return lambda value: len(value) <= maximum


def _length(name: str, args: list[str]) -> ConstraintCheck:
    low, high = _int_args(name, args, 2) if len(args) == 2 else _int_args(name, args, 1) * 2
    return lambda value: low <= len(value) <= high


def _range(name: str, args: list[str]) -> ConstraintCheck:
    if name == "min":
        low, high = _int_args(name, args, 1)[0], INT64_RANGE[1]
    elif name == "max":
        low, high = INT64_RANGE[0], _int_args(name, args, 1)[0]
    else:
        low, high = _int_args(name, args, 2)
    return lambda value: (number := _long_value(value)) is not None and low <= number <= high


_CONSTRAINTS: Final[dict[str, Callable[[str, list[str]], ConstraintCheck]]] = {
    "int": _no_args(_integer_in(INT32_RANGE)),
    "long": _no_args(_integer_in(INT64_RANGE)),
    "bool": _no_args(_is_bool),
    "double": _no_args(_is_real),
    "float": _no_args(_is_real),
    "decimal": _no_args(_is_decimal),
    "datetime": _no_args(_is_datetime),
    "guid": _no_args(_is_guid),
    "alpha": _no_args(lambda value: bool(_ALPHA.match(value))),
    "required": _no_args(lambda value: value != ""),
    "minlength": _min_length,
    "maxlength": _max_length,
    "length": _length,
    "min": _range,
    "max": _range,
    "range": _range,
}


def _build_constraint(text: str) -> ConstraintCheck:
    """A predicate for one inline constraint (``int``, ``min(1)``, ``regex(^a+$)``...)."""
    match = _CONSTRAINT.match(text)
    name = match.group("name").lower() if match else ""
    raw_args = match.group("args") if match else None
    if name == "regex" and raw_args:
        # ASP.NET: RegexOptions.IgnoreCase | CultureInvariant, and IsMatch (not anchored).
        pattern = re.compile(raw_args, re.IGNORECASE)
        return lambda value: pattern.search(value) is not None
    factory = _CONSTRAINTS.get(name)
    if factory is None:
        raise RouteTemplateError(f"the constraint reference '{text}' could not be resolved")
    args = [arg.strip() for arg in raw_args.split(",")] if raw_args is not None else []
    return factory(name, args)


@dataclass(frozen=True)
class LiteralText:
    """Fixed text of a segment (not ``typing.Literal``): matched case-insensitively."""

    text: str


@dataclass(frozen=True)
class Parameter:
    name: str
    constraint_texts: tuple[str, ...] = ()
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    checks: tuple[ConstraintCheck, ...] = field(default=(), compare=False, repr=False)

    @property
    def may_be_absent(self) -> bool:
        return self.optional or self.catch_all or self.default is not None

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


Part = LiteralText | Parameter


def _split_constraints(text: str) -> list[str]:
    """Split ``int:min(1):regex(a:b)`` on the colons outside parentheses."""
    pieces: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        if ch == ":" and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    pieces.append("".join(current))
    return pieces


def _parse_parameter(body: str, template: str) -> Parameter:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default: str | None = None
    optional = False
    # The default value (after '=') and '?' sit outside any constraint's parentheses.
    depth = 0
    for index, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch == "=" and depth == 0:
            default = body[index + 1 :]
            body = body[:index]
            break
    if default is None and body.endswith("?"):
        optional = True
        body = body[:-1]
    elif default is not None and default.endswith("?"):
        raise RouteTemplateError(f"'{template}': an optional parameter cannot have a default")
    name, *constraint_texts = _split_constraints(body)
    if not _PARAMETER_NAME.match(name):
        raise RouteTemplateError(f"'{template}': invalid parameter name '{name}'")
    if catch_all and optional:
        raise RouteTemplateError(f"'{template}': a catch-all parameter cannot be optional")
    checks = tuple(_build_constraint(text) for text in constraint_texts if text)
    return Parameter(
        name=name,
        constraint_texts=tuple(text for text in constraint_texts if text),
        optional=optional,
        catch_all=catch_all,
        default=default,
        checks=checks,
    )


def _read_parameter_body(segment: str, start: int, template: str) -> tuple[str, int]:
    """The text between ``{`` at ``start`` and its closing ``}``, and the index after it."""
    body: list[str] = []
    index = start + 1
    while index < len(segment):
        if segment.startswith(("}}", "{{"), index):
            body.append(segment[index])
            index += 2
        elif segment[index] == "}":
            return "".join(body), index + 1
        else:
            body.append(segment[index])
            index += 1
    raise RouteTemplateError(f"'{template}': unclosed '{{' in '{segment}'")


def _tokenize_segment(segment: str, template: str) -> list[Part]:
    parts: list[Part] = []
    literal: list[str] = []
    index = 0
    while index < len(segment):
        ch = segment[index]
        if segment.startswith(("{{", "}}"), index):
            literal.append(ch)
            index += 2
        elif ch == "{":
            body, index = _read_parameter_body(segment, index, template)
            if literal:
                parts.append(LiteralText("".join(literal)))
                literal = []
            if parts and isinstance(parts[-1], Parameter):
                raise RouteTemplateError(
                    f"'{template}': two parameters must be separated by a literal"
                )
            parts.append(_parse_parameter(body, template))
        elif ch in {"}", "?"}:
            raise RouteTemplateError(f"'{template}': unexpected '{ch}' in '{segment}'")
        else:
            literal.append(ch)
            index += 1
    if literal:
        parts.append(LiteralText("".join(literal)))
    return parts


def _parse_segment(segment: str, template: str) -> tuple[Part, ...]:
    parts = _tokenize_segment(segment, template)
    if len(parts) > 1:
        for position, part in enumerate(parts):
            if not isinstance(part, Parameter):
                continue
            if part.catch_all:
                raise RouteTemplateError(f"'{template}': a catch-all must be a whole segment")
            # ASP.NET allows an optional parameter in a complex segment only as '{a}.{b?}'.
            follows_period = position >= 2 and parts[position - 1] == LiteralText(".")
            if part.optional and (position != len(parts) - 1 or not follows_period):
                raise RouteTemplateError(
                    f"'{template}': an optional parameter in a complex segment must be "
                    "the last part and follow a period"
                )
    return tuple(parts)


def _segment_pattern(parts: Sequence[Part]) -> re.Pattern[str]:
    """A regex for a complex segment; greedy groups match right to left like ASP.NET."""
    pieces: list[str] = []
    for position, part in enumerate(parts):
        if isinstance(part, LiteralText):
            optional_next = position + 1 < len(parts) and _is_optional_part(parts[position + 1])
            if not optional_next:
                pieces.append(re.escape(part.text))
        elif part.optional:
            # '{file}.{ext?}': the extension is what follows the last period.
            pieces.append(rf"(?:\.(?P<p{position}>[^.]+))?")
        elif position + 2 < len(parts) and _is_optional_part(parts[position + 2]):
            pieces.append(rf"(?P<p{position}>.+?)")
        else:
            pieces.append(rf"(?P<p{position}>.+)")
    return re.compile("^" + "".join(pieces) + "$", re.IGNORECASE | re.DOTALL)


def _is_optional_part(part: Part) -> bool:
    return isinstance(part, Parameter) and part.optional


@dataclass(frozen=True)
class Segment:
    parts: tuple[Part, ...]
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def single(self) -> Part:
        return self.parts[0]

    @property
    def may_be_absent(self) -> bool:
        return (
            len(self.parts) == 1
            and isinstance(self.single, Parameter)
            and (self.single.may_be_absent)
        )


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed route template; :meth:`match` returns route values or None."""

    text: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> RouteTemplate:
        stripped = text.removeprefix("~").strip("/")
        segments: list[Segment] = []
        names: set[str] = set()
        raw_segments = stripped.split("/") if stripped else []
        for position, raw in enumerate(raw_segments):
            if raw == "":
                raise RouteTemplateError(f"'{text}': empty segment")
            parts = _parse_segment(raw, text)
            for part in parts:
                if isinstance(part, Parameter):
                    if part.name.lower() in names:
                        raise RouteTemplateError(f"'{text}': parameter '{part.name}' repeats")
                    names.add(part.name.lower())
                    if part.catch_all and position != len(raw_segments) - 1:
                        raise RouteTemplateError(f"'{text}': a catch-all must be the last segment")
            pattern = _segment_pattern(parts) if len(parts) > 1 else None
            segments.append(Segment(parts, pattern))
        # An optional segment can only be followed by segments that may be absent too.
        for position, segment in enumerate(segments):
            single = segment.single
            is_optional = (
                len(segment.parts) == 1 and isinstance(single, Parameter) and (single.optional)
            )
            if is_optional and not all(later.may_be_absent for later in segments[position + 1 :]):
                raise RouteTemplateError(
                    f"'{text}': an optional parameter must be at the end of the template"
                )
        return cls(text=text, segments=tuple(segments))

    def match(self, path_segments: Sequence[str]) -> dict[str, str] | None:
        values: dict[str, str] = {}
        for position, segment in enumerate(self.segments):
            single = segment.single
            if isinstance(single, Parameter) and single.catch_all:
                return self._match_catch_all(single, path_segments[position:], values)
            if position < len(path_segments):
                if not self._match_segment(segment, path_segments[position], values):
                    return None
            elif not segment.may_be_absent:
                return None
            elif isinstance(single, Parameter) and single.default is not None:
                values[single.name] = single.default
        return values if len(path_segments) <= len(self.segments) else None

    @staticmethod
    def _match_catch_all(
        parameter: Parameter, rest: Sequence[str], values: dict[str, str]
    ) -> dict[str, str] | None:
        value = "/".join(rest) or parameter.default
        if value is None:
            return values
        if not parameter.accepts(value):
            return None
        values[parameter.name] = value
        return values

    @staticmethod
    def _match_segment(segment: Segment, text: str, values: dict[str, str]) -> bool:
        if segment.pattern is None:
            part = segment.single
            if isinstance(part, LiteralText):
                return part.text.casefold() == text.casefold()
            if text == "" or not part.accepts(text):
                return False
            values[part.name] = text
            return True
        found = segment.pattern.match(text)
        if found is None:
            return False
        for position, part in enumerate(segment.parts):
            if isinstance(part, Parameter):
                value = found.group(f"p{position}")
                if value is None:
                    continue
                if not part.accepts(value):
                    return False
                values[part.name] = value
        return True


def _compare_templates(left: RouteTemplate, right: RouteTemplate) -> int:
    """``WebJobsRouteBuilder.RouteComparison``: negative when ``left`` is tried first."""
    for position, left_segment in enumerate(left.segments):
        if position >= len(right.segments):
            return -1
        left_part = left_segment.parts[0]
        right_part = right.segments[position].parts[0]
        if isinstance(left_part, LiteralText) and isinstance(right_part, Parameter):
            return -1
        if isinstance(left_part, Parameter) and isinstance(right_part, LiteralText):
            return 1
        if isinstance(left_part, Parameter) and isinstance(right_part, Parameter):
            difference = len(right_part.constraint_texts) - len(left_part.constraint_texts)
            if difference:
                return difference
        elif isinstance(left_part, LiteralText) and isinstance(right_part, LiteralText):
            left_text, right_text = left_part.text.upper(), right_part.text.upper()
            if left_text != right_text:
                return -1 if left_text < right_text else 1
    return 1 if len(right.segments) > len(left.segments) else 0


def split_path(path: str) -> list[str]:
    """Decoded segments of a raw (still percent-encoded) request path; trailing '/' ignored."""
    trimmed = path.strip("/")
    if trimmed == "":
        return []
    return [unquote(segment) for segment in trimmed.split("/")]


@dataclass(frozen=True)
class Route:
    """One function's HTTP route: the full template (prefix included), methods, auth level."""

    function_name: str
    template: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str

    @property
    def url_template(self) -> str:
        return "/" + self.template.text.strip("/")

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    route_params: dict[str, str]


def full_template(route_prefix: str, route: str) -> str:
    prefix = route_prefix.strip("/")
    route = route.removeprefix("~").strip("/")
    return f"{prefix}/{route}" if prefix and route else prefix or route


def _compare_routes(left: Route, right: Route) -> int:
    return _compare_templates(left.template, right.template)


_by_precedence = functools.cmp_to_key(_compare_routes)


class RouteTable:
    """Routes in the order the host tries them; the first template and method match wins."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(sorted(routes, key=_by_precedence))

    @classmethod
    def from_triggers(
        cls, triggers: Iterable[tuple[str, Mapping[str, object]]], route_prefix: str = "api"
    ) -> RouteTable:
        """Build from ``(function name, httpTrigger binding as the host receives it)`` pairs."""
        routes = []
        for function_name, binding in triggers:
            route = binding.get("route") or function_name
            methods = binding.get("methods")
            allowed = (
                frozenset(str(method).upper() for method in methods)
                if isinstance(methods, list) and methods
                else None
            )
            routes.append(
                Route(
                    function_name=function_name,
                    template=RouteTemplate.parse(full_template(route_prefix, str(route))),
                    methods=allowed,
                    auth_level=str(binding.get("authLevel") or "function").lower(),
                )
            )
        return cls(routes)

    def match(self, method: str, path: str) -> RouteMatch | None:
        segments = split_path(path)
        for route in self.routes:
            if not route.allows(method):
                continue
            values = route.template.match(segments)
            if values is not None:
                return RouteMatch(route=route, route_params=values)
        return None

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)
