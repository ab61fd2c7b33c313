"""Fuzzing machinery for ``test_api_fuzz``: requests schemathesis generates from the OpenAPI
document, hostile requests built on a valid one, and what every response is checked for.

- :class:`FuzzRun` sends each request through schemathesis (so its checks judge the response
  against the document), counts requests per operation, and collects every failure and every
  leak instead of stopping at the first, so one run reports all of them.
- :func:`explicit_hostile_requests` sends every curated hostile value (malformed JSON, an
  oversized body, wrong content types, odd path segments, query values and headers) to every
  place an operation reads it; :func:`drawn_hostile_requests` adds random ones. Each carries
  the statuses the contract allows for it.
- :func:`leak_markers` lists what no response may show: stack traces, SDK exception class
  names, and the stack's keys, connection strings and endpoints (unless the request itself
  carried the text, which the API may echo in a 404's detail).
"""

from __future__ import annotations

import builtins
import importlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, unquote

import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.webhooks import signature_header

type FuzzCase = schemathesis.Case[Any]
type FuzzOperation = schemathesis.APIOperation[Any, Any, Any, Any]

# What every response is checked for, hostile or generated.
CONFORMANCE_CHECKS: Final = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
)
# Generated cases know whether they are valid by the schema, so the app must agree with it.
GENERATED_CASE_CHECKS: Final = (
    *CONFORMANCE_CHECKS,
    positive_data_acceptance,
    negative_data_rejection,
    missing_required_header,
)
# Refusals of schema-valid requests that depend on state the schema cannot describe: a token
# this API did not issue, a reused Idempotency-Key, a stale If-Match, a payment that does not
# match its order. Each is documented for its operation.
STATE_DEPENDENT_PROBLEMS: Final = frozenset(
    f"urn:orderflow:problem:{slug}"
    for slug in ("continuation", "idempotency", "stale-etag", "payment-mismatch")
)

TRACE_MARKERS: Final = ("Traceback", 'File "', '.py", line')
CONNECTION_MARKERS: Final = (
    "AccountKey=",
    "AccountEndpoint=",
    "AccountName=",
    "SharedAccessKey",
    "DefaultEndpointsProtocol",
    "BlobEndpoint=",
    "QueueEndpoint=",
    "UseDevelopmentEmulator",
    "devstoreaccount1",
)
# Modules whose exception classes must never be named in a response.
SDK_EXCEPTION_MODULES: Final = (
    "azure.core.exceptions",
    "azure.cosmos.exceptions",
    "azure.servicebus.exceptions",
    "azure.identity",
    "pydantic",
    "pydantic_core",
    "json",
    "requests.exceptions",
    "urllib3.exceptions",
)
# Generic words that happen to be exception class names ("Exception" is too common a word).
_NOT_CLASS_NAMES: Final = frozenset({"Exception", "Warning", "Error"})


def exception_class_names(module_names: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for module_name in module_names:
        module = importlib.import_module(module_name)
        names.update(
            name
            for name, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, BaseException)
        )
    names.update(
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    )
    return names - _NOT_CLASS_NAMES


def leak_markers(secrets: Iterable[str], endpoints: Iterable[str]) -> tuple[str, ...]:
    """Everything a response must not contain: traces, class names, keys and endpoints."""
    return (
        *TRACE_MARKERS,
        *CONNECTION_MARKERS,
        *sorted(exception_class_names(SDK_EXCEPTION_MODULES)),
        *(secret for secret in secrets if secret),
        *endpoints,
    )


def _request_text(request: requests.PreparedRequest) -> str:
    body = request.body or b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    headers = "\n".join(
        f"{name}: {value.decode('latin-1') if isinstance(value, bytes) else value}"
        for name, value in request.headers.items()
    )
    return f"{unquote(request.url or '')}\n{headers}\n{text}"


def leaked(markers: Iterable[str], response: schemathesis.Response) -> list[str]:
    """The markers a response shows that its request did not carry."""
    shown = "\n".join(
        [
            *(f"{name}: {', '.join(values)}" for name, values in response.headers.items()),
            response.content.decode("utf-8", "replace"),
        ]
    )
    sent = _request_text(response.request)
    return [marker for marker in markers if marker in shown and marker not in sent]


def integral_floats_to_ints(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer; the API takes integer literals only (a float
    quantity is a client bug), which a schema cannot say. Positive cases send 3 instead."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integral_floats_to_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral_floats_to_ints(item) for item in value]
    return value


def problem_type(response: schemathesis.Response) -> str | None:
    if not response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


@dataclass
class FuzzRun:
    """Sends cases, judges every response, and keeps the tally and the findings."""

    base_url: str
    markers: tuple[str, ...]
    session: requests.Session = field(default_factory=requests.Session)
    requests_by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    leaks: dict[tuple[str, str], str] = field(default_factory=dict)

    def send(
        self,
        case: FuzzCase,
        kind: str,
        *,
        expected: frozenset[int] | None = None,
        session: requests.Session | None = None,
        **call_kwargs: Any,
    ) -> schemathesis.Response:
        """``session``: instead of :attr:`session` (whose headers carry a valid token)."""
        label = case.operation.label
        response = case.call(base_url=self.base_url, session=session or self.session, **call_kwargs)
        self.requests_by_operation[label] += 1
        self.statuses[(label, response.status_code)] += 1
        checks = list(CONFORMANCE_CHECKS if kind == "hostile" else GENERATED_CASE_CHECKS)
        if problem_type(response) in STATE_DEPENDENT_PROBLEMS:
            checks = [check for check in checks if check is not positive_data_acceptance]
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                self._record(self.failures, label, failure.title, str(group))
        if expected is not None and response.status_code not in expected:
            self._record(
                self.failures,
                label,
                f"{kind}: status {response.status_code}, expected one of {sorted(expected)}",
                f"{response.request.method} {response.request.url}\n{response.content[:500]!r}",
            )
        for marker in leaked(self.markers, response):
            self._record(
                self.leaks, label, marker, f"{response.request.url}\n{response.content[:800]!r}"
            )
        return response

    @staticmethod
    def _record(into: dict[tuple[str, str], str], label: str, what: str, detail: str) -> None:
        into.setdefault((label, what), detail[:3000])  # the first example of each finding

    def report(self) -> str:
        lines = [
            f"{count:5d}  {label}" for label, count in sorted(self.requests_by_operation.items())
        ]
        lines.append(f"{sum(self.requests_by_operation.values()):5d}  requests in all")
        lines += [
            f"       {label} -> {status}: {count}"
            for (label, status), count in sorted(self.statuses.items())
        ]
        return "\n".join(lines)


# --- hostile requests ---------------------------------------------------------------------------

MAX_BODY_BYTES: Final = 256 * 1024
JSON_TYPE: Final = "application/json"

# Bodies no JSON parser should accept (or that are JSON but not an object): always 400.
MALFORMED_BODIES: Final = (
    b"",
    b"{",
    b"{not json",
    b'{"currency": "EUR",}',
    b'{"a": 1}{"b": 2}',
    b"[1, 2",
    b"\xff\xfe{}",
    b'{"currency": "\xff\xfe"}',
    b'{"currency": "EUR", "currency": "USD"}',
    b"[" * 50_000,
    b'{"n": ' + b"9" * 5_000 + b"}",  # past Python's int-parsing digit limit
    b"null",
    b"[]",
    b'"just a string"',
    b"1e99999",
    b"<order><currency>EUR</currency></order>",
    b"currency=EUR&lines=1",
)
WRONG_CONTENT_TYPES: Final = (
    None,
    "",
    "text/plain",
    "text/json",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    "application/jsonx",
    "application/json-seq",
    "json",
    "*/*",
)
# Path segments as sent (already percent-encoded): encoded slashes and backslashes, dot
# segments, NUL and control characters, unicode (RTL override, emoji), quotes, very long.
ODD_PATH_SEGMENTS: Final = (
    "a%2Fb",
    "%2F",
    "a%5Cb",
    "%2E%2E",
    "%2E",
    "%00",
    "a%0Ab",
    "abc%0A",
    "a%0D%0Ab",
    "%25",
    "%25zz",
    "a%2F..%2F..%2Fetc%2Fpasswd",
    "%C0%AF",
    "%E2%80%AE",
    "%F0%9F%9B%92",
    "%C3%BC%C3%B1%C3%AF%C3%A7%C3%B8d%C3%A9",
    "a%20b",
    "a+b",
    "a;b",
    "a%3Fb",
    "a%23b",
    "%27%20OR%20%271%27%3D%271",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "x" * 300,
    "%C3%A9" * 400,
)
# Query values: non-ASCII digits (int() refuses some that str.isdigit() takes), signs, spaces,
# exponents, huge numbers, a trailing newline, and continuation tokens this API never issued.
ODD_QUERY_VALUES: Final = (
    "",
    "\u00b2",
    "\u0663",
    "\uff11",
    "1e2",
    "+5",
    "-1",
    "0",
    "101",
    "5 ",
    "5\n",
    "0x10",
    "9" * 40,
    "PENDING",
    "pending,paid",
    "eyJhIjogMX0",
    "eyJjIjoiYSJ9" * 800,
    "%00",
    "a" * 9_000,
)
# Header values (latin-1, as HTTP carries them) that parsers of ETags, keys, signatures,
# trace contexts and correlation ids must survive.
ODD_HEADER_VALUES: Final = (
    "",
    "*",
    '"',
    '""',
    'W/""',
    'W/"x"',
    '"unterminated',
    "W/",
    '"x", W/"y", *',
    ",,,,",
    "null",
    "-1",
    "\x80\xff",
    "é",
    "a\tb",
    "t=1,v1=",
    "t=\xb2,v1=ab",
    "t=99999999999999,v1=00",
    "00-" + "f" * 32 + "-" + "f" * 16 + "-01",
    "00-" + "0" * 32 + "-" + "0" * 16 + "-00",
    "../../etc/passwd",
    "${jndi:ldap://127.0.0.1/a}",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "a" * 4_000,
)
# Latin-1 text without control characters (HTTP forbids CR, LF and NUL in header values).
HEADER_TEXT: Final = st.text(
    alphabet=st.characters(
        min_codepoint=0x20,
        max_codepoint=0xFF,
        exclude_characters="".join(map(chr, range(0x7F, 0xA0))),
    ),
    max_size=300,
)
HOSTILE_HEADERS: Final = (
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Signature",
    "traceparent",
    "X-Correlation-Id",
)


@dataclass(frozen=True)
class BaseRequest:
    """A valid request for one operation, and the statuses it may get (state decides which)."""

    path_parameters: Mapping[str, str]
    statuses: frozenset[int]
    # What a well-formed id that names nothing gets (404 for reads, 201 for a new customer, ...).
    unknown_id_statuses: frozenset[int] = frozenset({404})
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Headers that get every value of ODD_HEADER_VALUES (the ones the operation reads).
    odd_headers: tuple[str, ...] = ()
    # Statuses an odd value of one of these headers may add.
    header_statuses: Mapping[str, frozenset[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """One operation: its valid request and where hostile values can go."""

    base: BaseRequest
    path_template: str
    path_patterns: Mapping[str, str]  # the document's pattern per path parameter
    query_names: tuple[str, ...]
    has_body: bool


@dataclass(frozen=True)
class HostileRequest:
    kind: str
    path_parameters: Mapping[str, str]
    headers: Mapping[str, str | None]  # None: leave the header out
    body: bytes | None
    expected: frozenset[int]
    raw_path: str | None = None  # a path sent as is (already percent-encoded)
    query: Mapping[str, str] = field(default_factory=dict)


def _with(base: BaseRequest, kind: str, expected: frozenset[int], **changes: Any) -> HostileRequest:
    return HostileRequest(
        kind=kind,
        path_parameters=changes.get("path_parameters", base.path_parameters),
        headers={**base.headers, **changes.get("headers", {})},
        body=changes.get("body", base.body),
        expected=expected,
        raw_path=changes.get("raw_path"),
        query=changes.get("query", {}),
    )


def _malformed(target: Target, body: bytes, expected: frozenset[int]) -> HostileRequest:
    headers = {"Content-Type": JSON_TYPE}
    return _with(target.base, "malformed body", expected, body=body, headers=headers)


def _oversized(target: Target, filler: bytes) -> HostileRequest:
    body = b'{"padding": "' + filler * MAX_BODY_BYTES + b'"}'
    headers = {"Content-Type": JSON_TYPE}
    return _with(target.base, "oversized body", frozenset({413}), body=body, headers=headers)


def _content_type(target: Target, value: str | None) -> HostileRequest:
    headers = {"Content-Type": value}
    return _with(target.base, "wrong content type", frozenset({415}), headers=headers)


def _path_segment(target: Target, name: str, segment: str) -> HostileRequest:
    base = target.base
    # Dots are encoded too, so no client or proxy folds "." or ".." segments away.
    raw = segment.replace(".", "%2E")
    decoded = unquote(raw)
    # fullmatch: in the document's (ECMA-262) patterns, "$" never matches before a "\n".
    well_formed = re.fullmatch(target.path_patterns[name], decoded) is not None
    path = target.path_template
    for parameter, value in base.path_parameters.items():
        path = path.replace(f"{{{parameter}}}", raw if parameter == name else value)
    return _with(
        base,
        f"odd path parameter {name}",
        # Well-formed by the document: it names nothing, something new, or something the
        # fuzzer created; malformed: 400.
        base.unknown_id_statuses | base.statuses if well_formed else frozenset({400}),
        path_parameters={**base.path_parameters, name: decoded},
        raw_path=path,
    )


def _query(target: Target, query: dict[str, str]) -> HostileRequest:
    base = target.base
    return _with(base, f"odd query {sorted(query)}", base.statuses | {400}, query=query)


def _headers(target: Target, odd: dict[str, str]) -> HostileRequest:
    base = target.base
    expected = base.statuses.union(*(base.header_statuses.get(name, frozenset()) for name in odd))
    return _with(base, f"odd headers {sorted(odd)}", expected, headers=odd)


def explicit_hostile_requests(target: Target) -> list[HostileRequest]:
    """Every curated hostile value in every place the operation reads it."""
    requests: list[HostileRequest] = []
    if target.has_body:
        requests += [_malformed(target, body, frozenset({400})) for body in MALFORMED_BODIES]
        requests.append(_oversized(target, b"x"))
        requests += [_content_type(target, value) for value in WRONG_CONTENT_TYPES]
    for name in target.base.path_parameters:
        requests += [_path_segment(target, name, segment) for segment in ODD_PATH_SEGMENTS]
    for name in target.query_names:
        requests += [_query(target, {name: value}) for value in ODD_QUERY_VALUES]
    for name in target.base.odd_headers:
        values: tuple[str, ...] = ODD_HEADER_VALUES
        if name == "X-Signature":
            values += odd_signatures(int(time.time()))
        requests += [_headers(target, {name: value}) for value in values]
    return requests


def odd_signatures(now: int) -> tuple[str, ...]:
    """Signature headers with a current timestamp, so their digests get compared."""
    return (
        f"t={now},v1=",
        f"t={now},v1=\xe9",
        f"t={now},v1={'\xff' * 64}",
        f"t={now},v1={'0' * 64}",
        f"t={now},v1={'0' * 64},v1={'g' * 64}",
        f"t={now},t={now},v1={'0' * 64}",
        f"t={now}, v1 = {'0' * 64}",
    )


def drawn_hostile_requests(target: Target) -> st.SearchStrategy[HostileRequest]:
    """Random bodies, path segments, query values and header combinations."""
    # Leading whitespace is not part of a header value (RFC 9110): clients refuse to send it.
    header_values = st.one_of(st.sampled_from(ODD_HEADER_VALUES), HEADER_TEXT.map(str.lstrip))
    strategies = [
        st.dictionaries(
            st.sampled_from(HOSTILE_HEADERS), header_values, min_size=1, max_size=3
        ).map(lambda odd: _headers(target, odd))
    ]
    if target.has_body:
        # Random bytes are rarely JSON; when they are an object, the model refuses it.
        strategies.append(
            st.binary(max_size=200).map(
                lambda body: _malformed(target, body, frozenset({400, 422}))
            )
        )
    if target.base.path_parameters:
        segments = st.text(min_size=1, max_size=80).map(lambda text: quote(text, safe=""))
        strategies.append(
            st.builds(
                lambda name, segment: _path_segment(target, name, segment),
                st.sampled_from(list(target.base.path_parameters)),
                segments,
            )
        )
    if target.query_names:
        strategies.append(
            st.dictionaries(
                st.sampled_from(target.query_names), st.text(max_size=100), min_size=1
            ).map(lambda query: _query(target, query))
        )
    return st.one_of(strategies)


def sign(body: bytes, secret: str) -> str:
    return signature_header(body, secret, int(time.time()))


def send_hostile(
    run: FuzzRun,
    operation: FuzzOperation,
    request: HostileRequest,
    *,
    webhook_secret: str | None,
    session: requests.Session | None = None,
) -> None:
    headers = {name: value for name, value in request.headers.items() if value is not None}
    if webhook_secret is not None and "X-Signature" not in request.headers:
        headers["X-Signature"] = sign(request.body or b"", webhook_secret)
    case = operation.Case(
        path_parameters=dict(request.path_parameters), headers=headers, query=dict(request.query)
    )
    call_kwargs: dict[str, Any] = {"data": request.body or b""}
    if request.raw_path is not None:
        call_kwargs["url"] = f"{run.base_url}{request.raw_path}"
    run.send(case, "hostile", expected=request.expected, session=session, **call_kwargs)
