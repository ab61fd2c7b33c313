"""The API gateway's policies (infra/policies/*.xml, used by infra/modules/gateway.bicep), checked
offline: well-formed, every {{named value}}, variable and token claim they use is defined, the
limits are Bicep parameters, and every refusal is RFC 9457 problem+json (429 with Retry-After)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET  # our own committed files, not untrusted input
from pathlib import Path

import pytest

from tests.infra import app_facts
from tests.infra.bicep import INFRA, ROOT, Expr, load

POLICIES = INFRA / "policies"
GATEWAY = "modules/gateway.bicep"
SECTIONS = ["inbound", "backend", "outbound", "on-error"]
NAMED_VALUE = re.compile(r"\{\{([A-Za-z0-9._-]+)\}\}")
VARIABLE_USE = re.compile(
    r"context\.Variables(?:\[\"([^\"]+)\"\]|\.(?:GetValueOrDefault(?:<[^>]+>)?|ContainsKey)\(\"([^\"]+)\")"
)
CLAIM_USE = re.compile(r"Claims\.(?:GetValueOrDefault|ContainsKey)\(\"([^\"]+)\"")
# Attributes through which policies define variables.
VARIABLE_DEFINITIONS = {
    "set-variable": "name",
    "validate-azure-ad-token": "output-token-variable-name",
    "validate-jwt": "output-token-variable-name",
    "rate-limit-by-key": "retry-after-variable-name",
    "rate-limit": "retry-after-variable-name",
}
# Claims of Microsoft Entra ID v2.0 access tokens.
ENTRA_V2_CLAIMS = {
    "aud", "iss", "iat", "nbf", "exp", "aio", "azp", "azpacr", "idp", "name", "oid",
    "preferred_username", "rh", "roles", "scp", "sid", "sub", "tid", "uti", "ver", "wids", "xms_cc",
}  # fmt: skip
LIMITED_POLICIES = {"rate-limit-by-key": ("calls", "renewal-period"), "quota-by-key": ("calls",)}


def policy_files() -> list[Path]:
    return sorted(POLICIES.glob("*.xml"))


def parse(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314  # committed policy files


def gateway_named_values() -> dict[str, object]:
    values = load(GATEWAY).variables["namedValues"]
    assert isinstance(values, dict)
    return values


def loaded_policy_files() -> set[str]:
    return set(
        re.findall(
            r"loadTextContent\('\.\./policies/([^']+)'\)", load(GATEWAY).source.decode("utf-8")
        )
    )


@pytest.mark.parametrize("path", policy_files(), ids=lambda p: p.name)
def test_policy_is_well_formed_with_the_four_sections(path: Path) -> None:
    root = parse(path)
    assert root.tag == "policies"
    assert [child.tag for child in root] == SECTIONS


def test_every_policy_file_is_used_and_every_used_file_exists() -> None:
    assert loaded_policy_files() == {p.name for p in policy_files()}


@pytest.mark.parametrize("path", policy_files(), ids=lambda p: p.name)
def test_every_named_value_is_defined_in_bicep(path: Path) -> None:
    used = set(NAMED_VALUE.findall(path.read_text(encoding="utf-8")))
    missing = used - gateway_named_values().keys()
    assert missing == set(), f"{path.name} uses {{{{{missing}}}}}, gateway.bicep defines none"


def test_every_named_value_is_used() -> None:
    used = {n for p in policy_files() for n in NAMED_VALUE.findall(p.read_text(encoding="utf-8"))}
    assert set(gateway_named_values()) - used == set()


def defined_variables(root: ET.Element) -> set[str]:
    return {
        str(element.get(attribute))
        for element in root.iter()
        for tag, attribute in VARIABLE_DEFINITIONS.items()
        if element.tag == tag and element.get(attribute)
    }


def expressions(root: ET.Element) -> list[str]:
    texts = [value for element in root.iter() for value in element.attrib.values()]
    texts += [element.text or "" for element in root.iter()]
    return [t for t in texts if t.strip().startswith("@")]


@pytest.mark.parametrize("path", policy_files(), ids=lambda p: p.name)
def test_every_variable_used_is_defined(path: Path) -> None:
    root = parse(path)
    used = {a or b for text in expressions(root) for a, b in VARIABLE_USE.findall(text)}
    missing = used - defined_variables(root)
    assert missing == set(), f"{path.name} reads variables no policy sets: {missing}"


@pytest.mark.parametrize("path", policy_files(), ids=lambda p: p.name)
def test_every_claim_used_is_an_entra_access_token_claim(path: Path) -> None:
    used = {c for text in expressions(parse(path)) for c in CLAIM_USE.findall(text)}
    assert used - ENTRA_V2_CLAIMS == set()


@pytest.mark.parametrize("path", policy_files(), ids=lambda p: p.name)
def test_limits_are_parameters(path: Path) -> None:
    gateway = load(GATEWAY)
    values = gateway_named_values()
    for element in parse(path).iter():
        for attribute in LIMITED_POLICIES.get(element.tag, ()):
            text = element.get(attribute, "")
            match = NAMED_VALUE.fullmatch(text)
            assert match, f"{path.name} {element.tag} {attribute}={text!r}: use a named value"
            value = values[match.group(1)]
            parameter = re.fullmatch(r"string\((\w+)\)", str(value))
            assert isinstance(value, Expr)
            assert parameter, f"{{{{{match.group(1)}}}}} = {value}: must be a parameter"
            assert parameter.group(1) in gateway.parameters


def test_main_passes_every_limit_from_its_own_parameters() -> None:
    main = load("main.bicep")
    module = next(m for m in main.modules if m.symbol == "gateway")
    assert module.body.get("name") == "gateway"
    for name in ("rateLimitCalls", "rateLimitPeriodSeconds", "quotaCalls", "quotaPeriodSeconds"):
        passed = module.params[name]
        assert isinstance(passed, Expr)
        assert passed.text in main.parameters, f"gateway {name} must be a main.bicep parameter"
    assert module.params["apiAudience"] == Expr("apiAppId")


def test_the_api_policy_validates_the_token_with_the_api_audience() -> None:
    root = parse(POLICIES / "api.xml")
    inbound = root.find("inbound")
    assert inbound is not None
    assert next(c.tag for c in inbound) == "base"
    validate = inbound.find("validate-azure-ad-token")
    assert validate is not None
    assert validate.get("tenant-id") == "{{orderflow-tenant-id}}"
    assert validate.get("header-name") == "Authorization"
    audiences = [a.text for a in validate.iter("audience")]
    assert "{{orderflow-api-audience}}" in audiences
    assert gateway_named_values()["orderflow-api-audience"] == Expr("apiAudience")
    # The limits come after the token is known: they are keyed on the caller.
    order = [c.tag for c in inbound]
    assert order.index("validate-azure-ad-token") < order.index("rate-limit-by-key")
    assert order.index("rate-limit-by-key") < order.index("quota-by-key")


def test_limits_are_keyed_on_the_calling_application_and_user() -> None:
    root = parse(POLICIES / "api.xml")
    key = next(e for e in root.iter("set-variable") if e.get("name") == "callerKey")
    claims = set(CLAIM_USE.findall(str(key.get("value"))))
    assert claims == {"azp", "oid"}
    for tag in ("rate-limit-by-key", "quota-by-key"):
        element = root.find(f".//{tag}")
        assert element is not None
        assert "callerKey" in str(element.get("counter-key"))


def responses(path: Path) -> dict[int, ET.Element]:
    found: dict[int, ET.Element] = {}
    for response in parse(path).iter("return-response"):
        status = response.find("set-status")
        assert status is not None
        found[int(str(status.get("code")))] = response
    return found


def header(response: ET.Element, name: str) -> str:
    element = next(h for h in response.iter("set-header") if h.get("name") == name)
    value = element.find("value")
    assert value is not None
    return str(value.text)


@pytest.mark.parametrize(
    ("file", "statuses"), [("api.xml", {401, 403, 429}), ("public-operation.xml", {429})]
)
def test_refusals_are_problem_json(file: str, statuses: set[int]) -> None:
    found = responses(POLICIES / file)
    assert set(found) == statuses
    for status, response in found.items():
        assert header(response, "Content-Type") == "application/problem+json"
        body = response.find("set-body")
        assert body is not None
        for member in ('"type"', '"title"', '"status"', '"detail"', '"traceId"'):
            assert member in str(body.text), f"{file} {status}: body lacks {member}"
        assert f'"status", {status})' in str(body.text)
        # The app's problem types (blueprints/_problems.py PROBLEM_TYPE), not about:blank.
        assert '"type", "urn:orderflow:problem:' in str(body.text)
        if status == 429:
            assert header(response, "Retry-After").startswith("@(")
        if status in {401, 403}:
            assert header(response, "WWW-Authenticate").startswith('Bearer realm="orderflow"')


def test_public_operations_are_exactly_the_documents_unsecured_ones() -> None:
    document = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    unsecured = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and operation.get("security") == []
    }
    assert set(load(GATEWAY).variables["publicOperations"]) == unsecured
    public_functions = {r.function for r in app_facts.public_routes()}
    assert unsecured <= public_functions


def test_public_operations_skip_the_token_check_but_are_rate_limited() -> None:
    inbound = parse(POLICIES / "public-operation.xml").find("inbound")
    assert inbound is not None
    tags = [c.tag for c in inbound]
    assert "base" not in tags, "<base /> would apply the API's token validation"
    assert "rate-limit-by-key" in tags


def test_the_api_is_imported_from_the_served_document() -> None:
    api = load(GATEWAY).resource("api").properties
    assert api["format"] == "openapi+json"
    assert api["value"] == Expr("loadTextContent('../../docs/openapi.json')")
    assert api["subscriptionRequired"] is False


# Bicep's loadTextContent reads at most this many characters; a larger document fails the build.
LOAD_TEXT_CONTENT_LIMIT = 131_072


def test_the_document_fits_load_text_content() -> None:
    text = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert len(text) <= LOAD_TEXT_CONTENT_LIMIT, (
        f"docs/openapi.json has {len(text)} characters; Bicep's loadTextContent reads at most "
        f"{LOAD_TEXT_CONTENT_LIMIT}: import the API from its URL (format openapi+json-link) instead"
    )
    for path in policy_files():
        assert len(path.read_text(encoding="utf-8")) <= LOAD_TEXT_CONTENT_LIMIT
