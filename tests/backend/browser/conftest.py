"""Headless Chromium driven by Selenium against the real stack (live_stack: gunicorn, both
Celery workers, beat); testkit/browser.py starts it.

Fixture: browser(width=1280, height=900, allow_console_errors=False, self_signed=False) -> a new
Chrome session on the suite's server (its own profile, so its own localStorage: each session is
a different person), quit at the end of the test; every session's console is checked then: no
Content-Security-Policy violation and no error.
"""
from __future__ import annotations

import pytest

from testkit import browser as chromium


@pytest.fixture
def browser(live_stack):
    if not chromium.available():
        pytest.fail("chromium / chromium-driver missing: run make setup", pytrace=False)
    sessions = []

    def start(width: int = 1280, height: int = 900, allow_console_errors: bool = False,
              self_signed: bool = False):
        driver = chromium.start_chromium(live_stack, width, height, self_signed)
        sessions.append((driver, allow_console_errors))
        return driver

    yield start
    problems = []
    for driver, allow in sessions:
        try:
            if not allow:
                problems += chromium.console_problems(driver)
        finally:
            chromium.quit_chromium(driver)
    assert not problems, "the browser's console:\n" + "\n".join(problems)
