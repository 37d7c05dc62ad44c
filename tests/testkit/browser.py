"""Headless Chromium for the browser tests (tests/backend/browser/, and the lab's
tests/infra/e2e/test_e2e_web_page.py), and what they do in a page with Selenium: wait for
something, read a text, sign up, write. Debian's chromium and chromium-driver (make setup);
nothing is downloaded: the driver's path is given, so Selenium Manager stays out of it."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
                 if Path(p).exists()), None)
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> bool:
    return bool(CHROMIUM) and Path(CHROMEDRIVER).exists()


def start_chromium(base_url: str, width: int = 1280, height: int = 900,
                   self_signed: bool = False):
    """A new headless Chromium session with a profile of its own (its own localStorage: each
    session is another person); driver.base_url is the site. Quit it with quit_chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="synspirit-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-sync", "--no-proxy-server", "--lang=en-US",
                f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    if self_signed:  # a test site's own certificate
        options.add_argument("--ignore-certificate-errors")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=CHROMEDRIVER, log_output=os.devnull))
    driver.set_page_load_timeout(30)
    driver.base_url = base_url
    driver.profile_dir = profile
    return driver


def console_problems(driver) -> list[str]:
    """The console's Content-Security-Policy violations and errors."""
    bad = []
    for entry in driver.get_log("browser"):
        message = entry.get("message", "")
        if "Content Security Policy" in message or entry.get("level") == "SEVERE":
            bad.append(f"{entry.get('level')}: {message}")
    return bad


def quit_chromium(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


PASSWORD = "correct-horse-battery"
LIVE = 20  # seconds a live update may take: the counts reach the page within about 2 s


def wait(driver, condition, timeout: float = LIVE, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: condition(d), message)


def text_of(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def live(driver) -> None:
    wait(driver, lambda d: text_of(d, "#live") == "live", message="Socket.IO never connected")


def signup(driver, prefix: str = "b") -> str:
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    driver.get(driver.base_url + "/signup")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "auth-submit").click()
    wait(driver, lambda d: text_of(d, "#nav-user") == name, message="not signed in")
    return name


def write(driver, title: str, content: str, kind: str = "post") -> int:
    driver.find_element(By.ID, "nav-write").click()
    wait(driver, lambda d: d.find_elements(By.ID, "write-form"))
    driver.find_element(By.ID, f"kind-{kind}").click()
    driver.find_element(By.ID, "title").send_keys(title)
    driver.find_element(By.ID, "content").send_keys(content)
    driver.find_element(By.ID, "write-submit").click()
    wait(driver, lambda d: re.search(rf"/{kind}s/\d+$", d.current_url),
         message="not sent to the new item's page")
    wait(driver, lambda d: text_of(d, "main h1") == title)
    return int(driver.current_url.rsplit("/", 1)[1])


def mark_page(driver) -> None:
    """A mark that a reload would wipe out."""
    driver.execute_script("window.__synspirit_no_reload = 42;")


def not_reloaded(driver) -> bool:
    return driver.execute_script("return window.__synspirit_no_reload") == 42
