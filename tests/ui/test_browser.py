"""End to end in headless Chromium (Debian's, no download): open the app, score an employee, see why."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from serving.proxy.backend import free_port
from tests.conftest import subprocess_env
from tests.serving.conftest import ROLE_KEYS, Proxy

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WATERFALL = "[data-testid='stImage'] img"
SCREENSHOT = os.environ.get("UI_SCREENSHOT")  # Where to keep the screenshot for the README, if anywhere.

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture(scope="module")
def ui(proxy: Proxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m ui` as a user runs it, pointed at the proxy."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ui", "--port", str(port), "--proxy-url", proxy.url],
            env=subprocess_env(UI_API_KEY=ROLE_KEYS["ui"]), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium driven by chromedriver, both from Debian."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def test_an_officer_scores_one_employee_and_sees_why(
    ui: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    wait = WebDriverWait(browser, 90)
    browser.get(ui)
    box = wait.until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "input[aria-label='Employee id']"))
    )
    assert "Service ready" in browser.find_element(By.TAG_NAME, "body").text
    box.send_keys("7", Keys.ENTER)
    button = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Score")
    button.click()
    image = wait.until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, WATERFALL)))
    wait.until(lambda _: image.get_attribute("naturalWidth") not in (None, "0"))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Attrition = Yes" in body and "probability" in body and "log-odds)" in body
    shot = tmp_path / "ui.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if SCREENSHOT:
        shutil.copy(shot, SCREENSHOT)
