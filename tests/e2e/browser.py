"""Headless Chromium for end-to-end tests, through the W3C WebDriver protocol (selenium).

The browser and its driver are Debian's ``chromium`` and ``chromium-driver`` (installed by
``scripts/bootstrap.sh --with-browser``; ``make test`` does it), or any Chromium-based browser
and chromedriver on PATH; ``ORDERFLOW_CHROMIUM`` / ``ORDERFLOW_CHROMEDRIVER`` name others. Both
paths are given to selenium, so Selenium Manager never runs and nothing is downloaded. A
missing browser fails the test (it does not skip): it is a broken setup.

What a page did is recorded for the test to assert on: console messages (the browser log),
Content-Security-Policy violations (a ``securitypolicyviolation`` listener installed before any
page script runs) and the URL of every request the page sent (the performance log).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SETUP_HINT = (
    "install it with `make setup-browser` (Debian: apt-get install chromium chromium-driver)"
)

# Runs in every document before its own scripts, outside the page's CSP.
_RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push({
    directive: event.effectiveDirective, blocked: event.blockedURI, source: event.sourceFile,
    line: event.lineNumber, sample: event.sample
  });
});
"""


class BrowserSetupError(RuntimeError):
    pass


def _find(env_name: str, names: tuple[str, ...]) -> str:
    explicit = os.environ.get(env_name)
    if explicit:
        if not Path(explicit).is_file():
            raise BrowserSetupError(f"{env_name}={explicit} is not a file")
        return explicit
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserSetupError(f"{' / '.join(names)} not found on PATH: {SETUP_HINT}")


def browser_paths() -> tuple[str, str]:
    """(browser, driver) executables."""
    return _find("ORDERFLOW_CHROMIUM", BROWSER_NAMES), _find(
        "ORDERFLOW_CHROMEDRIVER", ("chromedriver",)
    )


@dataclass
class Browser:
    driver: webdriver.Chrome
    _requests: list[str]

    def console_errors(self) -> list[dict[str, Any]]:
        """Console messages at error level since the last call (Chromium's SEVERE)."""
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def csp_violations(self) -> list[dict[str, Any]]:
        violations = self.driver.execute_script("return window.__cspViolations || [];")
        return list(violations)

    def requested_urls(self) -> list[str]:
        """Every URL the browser requested so far (documents, assets, fetches, token calls)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self._requests.append(message["params"]["request"]["url"])
        return list(self._requests)


@contextmanager
def headless_chromium(*, width: int = 1280, height: int = 1400) -> Iterator[Browser]:
    browser_path, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    profile = tempfile.mkdtemp(prefix="orderflow-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI containers, where the sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        # No background traffic of the browser's own (updates, safe browsing, sync, ...): the
        # test asserts that every request goes to the app or its issuer.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=driver_path, log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": _RECORD_CSP_VIOLATIONS}
        )
        yield Browser(driver, [])
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
