"""What the browser tests (tests/backend/browser/) do in a page, with Selenium: wait for
something, read a text, sign up, write."""
from __future__ import annotations

import re
import uuid

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

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
