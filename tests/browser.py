"""Headless Chromium for tests that look at Label Studio's UI the way a person does.

``chromium(tmp_dir)`` starts Debian's Chromium through its chromedriver (selenium) with a fresh
profile folder, headless, without GPU, sandbox, sync, component updates or any other background
network traffic; ``login(driver, url, email, password)`` logs in through Label Studio's
``/user/login`` form and waits until the React app has drawn the page.

Finding the browser -- the same documented exception to "only core/settings.py reads the
environment" as tests/lsharness.py: ``CHROMEDRIVER`` (``make test`` sets it to the output of
``tools/ensure_chromium.sh``) and ``CHROMIUM`` are read from ``os.environ``; when ``CHROMEDRIVER`` is
unset, ``tools/ensure_chromium.sh`` runs (it installs ``chromium`` and ``chromium-driver`` with
apt-get when missing).  When that fails, ``find_chromedriver`` raises RuntimeError with the reason:
the browser fixture fails the test (a skip only with ``ALLOW_SKIP_SERVICES=1`` outside CI, the
harness's policy).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, TypeVar

from demo.lsserver import installed_command

REPO = Path(__file__).resolve().parent.parent
ENSURE_SCRIPT = REPO / "tools" / "ensure_chromium.sh"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1440,900")
T = TypeVar("T")


def find_chromedriver() -> str:
    """The chromedriver command: $CHROMEDRIVER, else what tools/ensure_chromium.sh prints."""
    return installed_command("CHROMEDRIVER", ENSURE_SCRIPT, timeout=1200)


def chromium(profile_dir: str | Path):
    """A selenium Chrome driver on headless Chromium with a fresh profile in ``profile_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # documented exception
    driver = webdriver.Chrome(service=Service(executable_path=find_chromedriver()), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait(what: Callable[[], T], timeout: float = 30.0, message: str = "", poll: float = 0.25) -> T:
    """Call ``what`` until it returns something truthy (exceptions count as "not yet"); return it."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = what()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001  (the page is still loading)
            last = exc
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message or what}"
                         + (f" (last error: {type(last).__name__}: {last})" if last else ""))


def login(driver, url: str, email: str, password: str) -> None:
    """Log in through ``/user/login`` and wait for the projects page of the React app."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/user/login")
    wait(lambda: driver.find_element(By.NAME, "email"), message="the login form")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
    wait(lambda: "/user/login" not in driver.current_url, message="the redirect after logging in")
    wait_for_app(driver)


def wait_for_app(driver, timeout: float = 60.0) -> None:
    """Wait until the React app has rendered into its root and the page is loaded."""
    wait(lambda: driver.execute_script(
        "return document.readyState === 'complete' && !!document.querySelector('.app-wrapper, #app, .lsf-wrapper')"
        " && document.body.innerText.trim().length > 0"), timeout, "Label Studio's React app")
