"""The API reference in a real browser: headless Chromium against the app on the local host.

The page must load without console errors or Content-Security-Policy violations, list every
operation of the served OpenAPI document, and call the API through "Try it out". Every request
the browser sends goes to the app itself (no third party at run time).

    ORDERFLOW_SCREENSHOT=docs/api-reference.png .venv/bin/python -m pytest \\
        tests/e2e/test_api_docs_browser.py     # also refreshes the README's screenshot
"""

from __future__ import annotations

import json
import os
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


def test_try_it_out_calls_the_api(docs_page: Browser, app_host: HostProcess) -> None:
    sku = f"DOCS-{uuid.uuid4().hex[:8].upper()}"
    stocked = app_host.request(
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
    block.find_element(By.CSS_SELECTOR, ".btn.execute").click()

    response = ".live-responses-table tr.response"
    status = _wait(docs_page).until(
        lambda _: block.find_elements(By.CSS_SELECTOR, f"{response} .response-col_status")
    )
    assert status[0].text.strip() == "200"
    body = block.find_element(By.CSS_SELECTOR, f"{response} .response-col_description pre")
    assert json.loads(body.text) == {"sku": sku, "available": 7}
    assert docs_page.console_errors() == []
    assert docs_page.csp_violations() == []

    target = os.environ.get("ORDERFLOW_SCREENSHOT")
    if target:
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", block)
        driver.save_screenshot(str(ROOT / target))


def test_every_request_went_to_the_app(docs_page: Browser, app_host: HostProcess) -> None:
    app = urllib.parse.urlsplit(app_host.url)
    requested = docs_page.requested_urls()

    assert any(url.endswith("/api/openapi.json") for url in requested)
    network = [
        urllib.parse.urlsplit(url)
        for url in requested
        if urllib.parse.urlsplit(url).scheme in ("http", "https", "ws", "wss")
    ]  # not data: URLs, nor the browser's own chrome:// start page
    assert len(network) >= 5  # the page, its four files, the document, the API call
    foreign = [url.geturl() for url in network if url.netloc != app.netloc]
    assert foreign == []
