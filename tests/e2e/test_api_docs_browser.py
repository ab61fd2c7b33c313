"""The API reference in a real browser: headless Chromium against the app on the local host.

The page must load without console errors or Content-Security-Policy violations, list every
operation of the served OpenAPI document, sign in through "Authorize" (client credentials at the
stack's local issuer) and call the API with that token through "Try it out": 401 before, 200
after. Every request the browser sends goes to the app or the issuer (no third party).

    ORDERFLOW_SCREENSHOT=docs/api-reference.png .venv/bin/python -m pytest \\
        tests/e2e/test_api_docs_browser.py     # also refreshes the README's screenshot
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.browser import Browser, headless_chromium
from tests.fixtures.host import HostProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 20


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def docs_page(browser: Browser, app_host: HostProcess) -> Browser:
    """The reference page, loaded once and rendered (its operations are on screen)."""
    browser.driver.get(f"{app_host.url}/api/docs")
    WebDriverWait(browser.driver, WAIT_SECONDS).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock .opblock-summary-path"))
    )
    return browser


def _wait(browser: Browser) -> WebDriverWait[WebDriver]:
    return WebDriverWait(browser.driver, WAIT_SECONDS)


def _documented_operations(app_host: HostProcess) -> set[tuple[str, str]]:
    document = json.loads(app_host.request("GET", "/api/openapi.json").body)
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def _operation(browser: Browser, method: str, path: str) -> WebElement:
    for block in browser.driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        summary_path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path")
        summary_method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method")
        if summary_path.get_attribute("data-path") == path and summary_method.text == method:
            return block
    raise AssertionError(f"{method} {path} is not on the page")


def test_page_loads_cleanly_and_lists_every_operation(
    docs_page: Browser, app_host: HostProcess
) -> None:
    driver = docs_page.driver
    listed = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in driver.find_elements(By.CSS_SELECTOR, ".opblock")
    }

    assert driver.title == "Orderflow API reference"
    assert listed == _documented_operations(app_host)
    assert docs_page.console_errors() == []
    assert docs_page.csp_violations() == []


LIVE_RESPONSE = ".live-responses-table tr.response"


def _execute(browser: Browser, block: WebElement) -> tuple[str, str]:
    """Press Execute and wait for the new answer: (status, body text)."""
    old = block.find_elements(By.CSS_SELECTOR, LIVE_RESPONSE)
    if old:  # Clear removes the last answer, so the next one is new
        block.find_element(By.CSS_SELECTOR, ".btn-clear").click()
        _wait(browser).until(ec.staleness_of(old[0]))
    block.find_element(By.CSS_SELECTOR, ".btn.execute").click()
    status = _wait(browser).until(
        lambda _: block.find_elements(By.CSS_SELECTOR, f"{LIVE_RESPONSE} .response-col_status")
    )
    body = block.find_element(By.CSS_SELECTOR, f"{LIVE_RESPONSE} .response-col_description pre")
    return status[0].text.strip(), body.text


def _authorize_with_client_credentials(browser: Browser) -> None:
    driver = browser.driver
    driver.find_element(By.CSS_SELECTOR, ".auth-wrapper .btn.authorize").click()
    dialog = _wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    oauth = next(
        container
        for container in dialog.find_elements(By.CSS_SELECTOR, ".auth-container")
        if "clientCredentials" in container.text
    )
    client_id = oauth.find_element(By.CSS_SELECTOR, 'input[data-name="clientId"]')
    assert client_id.get_attribute("value") == "orderflow-local-client"  # API_DOCS_CLIENT_ID
    ticked = {
        box.get_attribute("data-value")
        for box in oauth.find_elements(By.CSS_SELECTOR, 'input[type="checkbox"]')
        if box.is_selected()
    }
    assert ticked == {"Orders.ReadWrite.All", "Inventory.ReadWrite", "Imports.Read"}
    oauth.find_element(By.CSS_SELECTOR, ".btn.modal-btn.auth.authorize").click()
    _wait(browser).until(
        lambda _: "Logout" in oauth.text or oauth.find_elements(By.CSS_SELECTOR, ".errors")
    )
    assert not oauth.find_elements(By.CSS_SELECTOR, ".errors"), oauth.text
    dialog.find_element(By.CSS_SELECTOR, ".btn-done").click()
    _wait(browser).until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))


def test_authorize_then_try_it_out_sends_the_token(
    docs_page: Browser, app_host: HostProcess
) -> None:
    sku = f"DOCS-{uuid.uuid4().hex[:8].upper()}"
    stocked = app_host.request(  # with the host fixture's own token (Inventory.ReadWrite)
        "PUT",
        f"/api/v1/inventory/{sku}",
        body=b'{"available": 7}',
        headers={"Content-Type": "application/json"},
    )
    assert stocked.status == 200, stocked.body
    driver = docs_page.driver
    block = _operation(docs_page, "GET", "/api/v1/inventory/{sku}")
    block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    _wait(docs_page).until(lambda _: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    field = block.find_element(By.CSS_SELECTOR, 'tr[data-param-name="sku"] input')
    field.clear()
    field.send_keys(sku)

    status, body = _execute(docs_page, block)
    assert status == "401", body  # not signed in yet: the API wants a token
    assert json.loads(body)["status"] == 401
    # The browser reports the 401 itself as a failed resource load; nothing else went wrong.
    reported = docs_page.console_errors()
    assert [entry["source"] for entry in reported] == ["network"], reported
    assert f"/api/v1/inventory/{sku} - " in reported[0]["message"]
    assert "status of 401" in reported[0]["message"]

    _authorize_with_client_credentials(docs_page)
    status, body = _execute(docs_page, block)
    assert status == "200", body
    assert json.loads(body) == {"sku": sku, "available": 7}
    curl = block.find_element(By.CSS_SELECTOR, ".curl-command").get_attribute("textContent")
    sent = re.search(r"Authorization: Bearer ([\w-]+)\.([\w-]+)\.([\w-]+)", str(curl))
    assert sent, curl
    claims = json.loads(base64.urlsafe_b64decode(sent.group(2) + "=" * (-len(sent.group(2)) % 4)))
    # The roles ticked in the dialog (API_DOCS_SCOPES), asked of the local issuer by the page.
    assert set(claims["roles"]) == {"Orders.ReadWrite.All", "Inventory.ReadWrite", "Imports.Read"}
    assert docs_page.console_errors() == []
    assert docs_page.csp_violations() == []

    target = os.environ.get("ORDERFLOW_SCREENSHOT")
    if target:
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", block)
        driver.save_screenshot(str(ROOT / target))


def test_every_request_went_to_the_app_or_its_issuer(
    docs_page: Browser, app_host: HostProcess
) -> None:
    app = urllib.parse.urlsplit(app_host.url)
    issuer = urllib.parse.urlsplit(str(app_host.issuer))
    requested = docs_page.requested_urls()

    assert any(url.endswith("/api/openapi.json") for url in requested)
    network = [
        urllib.parse.urlsplit(url)
        for url in requested
        if urllib.parse.urlsplit(url).scheme in ("http", "https", "ws", "wss")
    ]  # not data: URLs, nor the browser's own chrome:// start page
    assert len(network) >= 5  # the page, its four files, the document, the API call
    assert any(url.netloc == issuer.netloc and url.path == "/token" for url in network)
    foreign = [url.geturl() for url in network if url.netloc not in (app.netloc, issuer.netloc)]
    assert foreign == []
