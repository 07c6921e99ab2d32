"""Browser tests: the local endpoint's pages in a real headless Chromium, driven by Selenium.

The server is the end-to-end one (tests/e2e/conftest.py): a tiny model trained and
published, served by `python -m local_endpoint` over real HTTP. Chromium and its
driver are Debian's packages; without them the tests skip and say how to install
them, except in CI (`CI` set), where `.ci/run` installs them and a missing browser
fails. Each test leaves a screenshot in test-artifacts/browser/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.e2e.conftest import (  # noqa: F401  (the end-to-end fixtures, reused as they are)
    examples,
    expected,
    model_store,
    published_version,
    server,
    trained,
    training_output,
)
from tests.support.local_server import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")  # the system driver: Selenium Manager never downloads one
INSTALL_HINT = "install both with: apt-get update && apt-get install -y chromium chromium-driver"
# Headless as root, and nothing that reaches out to the network on its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW_SIZE = (1000, 760)  # width, height in CSS pixels: a laptop browser window
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the session, with a fresh profile."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        reason = f"Chromium or its driver is missing ({', '.join(missing)}); {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium: WebDriver, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """The session's Chromium; a screenshot of where the test left it is saved afterwards."""
    chromium.set_window_size(*WINDOW_SIZE)
    chromium.get_log("browser")  # start each test with an empty console
    yield chromium
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    chromium.save_screenshot(str(SCREENSHOTS / f"{request.node.name}.png"))
