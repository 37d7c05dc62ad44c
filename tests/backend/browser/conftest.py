"""Headless Chromium driven by Selenium against the real stack (live_stack: gunicorn, both
Celery workers, beat). Debian's chromium and chromium-driver (tests/bootstrap.sh); nothing is
downloaded (the driver's path is given, so Selenium Manager stays out of it).

Fixtures: browser(width=1280, height=900, allow_console_errors=False, self_signed=False) -> a
new Chrome session (its own profile, so its own
localStorage: each session is a different person), quit at the end of the test; every session's
console is checked at the end: no Content-Security-Policy violation and no error.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
                 if Path(p).exists()), None)
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _console_problems(entries: list[dict]) -> list[str]:
    bad = []
    for entry in entries:
        message = entry.get("message", "")
        if "Content Security Policy" in message or entry.get("level") == "SEVERE":
            bad.append(f"{entry.get('level')}: {message}")
    return bad


@pytest.fixture
def browser(live_stack):
    if not CHROMIUM or not Path(CHROMEDRIVER).exists():
        pytest.fail("chromium / chromium-driver missing: run make setup", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    sessions = []
    profiles = []

    def start(width: int = 1280, height: int = 900, allow_console_errors: bool = False,
              self_signed: bool = False):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        profile = tempfile.mkdtemp(prefix="synspirit-chromium-")
        profiles.append(profile)
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--disable-sync", "--lang=en-US", f"--user-data-dir={profile}",
                    f"--window-size={width},{height}"):
            options.add_argument(arg)
        if self_signed:  # the local nginx's certificate (test_nginx_page.py)
            options.add_argument("--ignore-certificate-errors")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=CHROMEDRIVER,
                          log_output=os.devnull)
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(30)
        driver.base_url = live_stack
        driver.test_name = uuid.uuid4().hex[:6]
        sessions.append((driver, allow_console_errors))
        return driver

    yield start
    problems = []
    for driver, allow in sessions:
        try:
            if not allow:
                problems += _console_problems(driver.get_log("browser"))
        finally:
            driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)
    assert not problems, "the browser's console:\n" + "\n".join(problems)
