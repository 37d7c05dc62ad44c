"""The web page in a real browser (headless Chromium), against the real stack: two people, one
writes, the other likes and reads, counts and comments move without a reload; what the server
says is shown as text; the page keeps to the nginx CSP, fits a phone's width, works with the
keyboard and comes back by itself after the server went away."""
from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from testkit import browser as chromium
from testkit.apiclient import API
from testkit.browser import PASSWORD, live, mark_page, not_reloaded, signup, text_of, wait, write
from testkit.processes import free_port, web_command


def test_two_people_write_like_and_comment_live(browser):
    a, b = browser(allow_console_errors=True), browser()  # a: checked below

    # A signs up, writes a post (Chinese and English), finds it on the front page.
    writer = signup(a, "writer")
    title = f"你好，SynSpirit 社区 {uuid.uuid4().hex[:6]}"
    post_id = write(a, title, "第一段：中文内容。\nSecond line in English.")
    assert text_of(a, "#item-content") == "第一段：中文内容。\nSecond line in English."
    a.find_element(By.CSS_SELECTOR, "a.brand").click()
    wait(a, lambda d: title in [e.text for e in d.find_elements(
        By.CSS_SELECTOR, "#post-feed .card-title")], message="the new post is not on /")
    a.find_element(By.LINK_TEXT, title).click()
    wait(a, lambda d: text_of(d, "main h1") == title)
    live(a)
    mark_page(a)
    likes = f'[data-count="post:{post_id}:likes"]'
    comments = f'[data-count="post:{post_id}:comments"]'
    assert text_of(a, likes) == "0"

    # B, another browser, likes it: A's count changes without a reload.
    signup(b, "reader")
    b.get(f"{b.base_url}/posts/{post_id}")
    wait(b, lambda d: text_of(d, "main h1") == title)
    live(b)
    mark_page(b)
    b.find_element(By.ID, "like-button").click()
    wait(b, lambda d: d.find_element(By.ID, "like-button").get_attribute("aria-pressed") == "true")
    t0 = time.monotonic()
    wait(a, lambda d: text_of(d, likes) == "1", message="A's like count did not move")
    like_seconds = time.monotonic() - t0
    assert not_reloaded(a)
    # Collect and share too.
    b.find_element(By.ID, "collect-button").click()
    wait(a, lambda d: text_of(d, f'[data-count="post:{post_id}:collects"]') == "1")
    b.find_element(By.ID, "share-button").click()
    wait(b, lambda d: f"/posts/{post_id}" in text_of(d, "#toast"))
    wait(a, lambda d: text_of(d, f'[data-count="post:{post_id}:shares"]') == "1")
    # B takes the like back: A sees it.
    b.find_element(By.ID, "like-button").click()
    wait(a, lambda d: text_of(d, likes) == "0")
    assert not_reloaded(a)

    # A comments: B sees the comment and the count arrive.
    comment = f"谢谢！Thanks <b>{uuid.uuid4().hex[:6]}</b>"
    a.find_element(By.ID, "comment-input").send_keys(comment)
    a.find_element(By.ID, "comment-submit").click()
    wait(a, lambda d: comment in [e.text for e in d.find_elements(By.CSS_SELECTOR, ".comment-text")])
    wait(b, lambda d: comment in [e.text for e in d.find_elements(By.CSS_SELECTOR, ".comment-text")],
         message="B did not see the comment live")
    wait(b, lambda d: text_of(d, comments) == "1")
    assert not_reloaded(b)
    assert not b.find_elements(By.CSS_SELECTOR, ".comment-text b"), "the comment became HTML"
    # Only the author may delete: A sees a Delete on the comment, B does not.
    assert not b.find_elements(By.CSS_SELECTOR, ".comment button.danger")
    assert a.find_elements(By.CSS_SELECTOR, ".comment button.danger")

    # A signs out.
    a.find_element(By.ID, "nav-signout").click()
    wait(a, lambda d: d.find_element(By.ID, "nav-signin").is_displayed())
    assert not a.find_element(By.ID, "nav-user").is_displayed()
    assert a.execute_script("return localStorage.getItem('synspirit.session')") is None
    # Up to here A's console is clean (the wrong password below logs its 401).
    assert chromium.console_problems(a) == []
    # ... and signs in again, the name in another case (accounts are case-insensitive).
    a.find_element(By.ID, "nav-signin").click()
    wait(a, lambda d: d.find_elements(By.ID, "signin-form"))
    a.find_element(By.ID, "username").send_keys(writer.upper())
    a.find_element(By.ID, "password").send_keys("wrong-password")
    a.find_element(By.ID, "auth-submit").click()
    wait(a, lambda d: text_of(d, "#form-error") != "", message="no error for a wrong password")
    a.find_element(By.ID, "password").clear()
    a.find_element(By.ID, "password").send_keys(PASSWORD)
    a.find_element(By.ID, "auth-submit").click()
    wait(a, lambda d: text_of(d, "#nav-user") == writer, message="not signed in again")
    print(f"like seen by the other session after {like_seconds:.2f} s")


def test_an_article_renders_and_deletes_and_markup_stays_text(browser, api):
    a = browser()
    signup(a, "author")
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    post_id = write(a, hostile, hostile)
    assert text_of(a, "main h1") == hostile
    assert text_of(a, "#item-content") == hostile

    article_id = write(a, f"Markdown 文章 {uuid.uuid4().hex[:6]}",
                       "# 标题 Heading\n\nSome *emphasis* and 中文。\n\n" + hostile, kind="article")
    # The worker renders it; the page fetches it again on the `rendered` event.
    wait(a, lambda d: d.find_elements(By.CSS_SELECTOR, "#item-content h1"),
         message="the article's HTML never arrived")
    assert a.find_element(By.CSS_SELECTOR, "#item-content em").text == "emphasis"

    a.get(a.base_url + "/")
    wait(a, lambda d: hostile in [e.text for e in d.find_elements(By.CSS_SELECTOR, "#post-feed .card-title")])
    for path in ("/", f"/posts/{post_id}", f"/articles/{article_id}"):
        a.get(a.base_url + path)
        wait(a, lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"))
        time.sleep(0.3)
        assert a.find_elements(By.CSS_SELECTOR, "main img, main script") == [], path
        assert a.execute_script("return window.__pwned") is None, path

    # Deleting one's own post takes two clicks and leaves it gone.
    a.get(f"{a.base_url}/posts/{post_id}")
    wait(a, lambda d: text_of(d, "main h1") == hostile)
    delete = a.find_element(By.CSS_SELECTOR, ".actions button.danger")
    delete.click()
    wait(a, lambda d: delete.text == "Really delete?")
    delete.click()
    wait(a, lambda d: d.current_url.rstrip("/") == d.base_url)
    assert api.get(f"/api/posts/{post_id}").status_code == 404


def test_phone_width_and_keyboard(browser, api, register_user):
    _, token = register_user("p")
    long_word = "x" * 300
    post = api.create("post", token, title="手机上的长标题 " + long_word[:150],
                      content="很长的中文段落。" * 40 + long_word)
    phone = browser(375, 800)
    for path in ("/", f"/posts/{post['id']}", "/signup", "/write"):
        phone.get(phone.base_url + path)
        wait(phone, lambda d: d.find_elements(By.CSS_SELECTOR, "main h1")
             and not d.find_elements(By.CSS_SELECTOR, "[aria-busy]"))  # the lists are in
        time.sleep(0.3)
        width = phone.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{path}: horizontal scroll at phone width ({width})"

    # Keyboard only: sign up, then like with Tab and Space.
    kb = browser()
    kb.get(kb.base_url + "/signup")
    wait(kb, lambda d: d.switch_to.active_element.get_attribute("id") == "username")
    name = f"kb{uuid.uuid4().hex[:10]}"
    kb.switch_to.active_element.send_keys(name, Keys.TAB, PASSWORD, Keys.ENTER)
    wait(kb, lambda d: text_of(d, "#nav-user") == name)
    kb.get(f"{kb.base_url}/posts/{post['id']}")
    wait(kb, lambda d: d.find_elements(By.ID, "like-button"))
    live(kb)
    for _ in range(40):
        ActionChains(kb).send_keys(Keys.TAB).perform()
        if kb.switch_to.active_element.get_attribute("id") == "like-button":
            break
    else:
        pytest.fail("Tab never reached the like button")
    kb.switch_to.active_element.send_keys(Keys.SPACE)
    wait(kb, lambda d: text_of(d, f'[data-count="post:{post["id"]}:likes"]') == "1")


def test_the_page_comes_back_by_itself_after_the_server_went_away(browser, procs, stack_env,
                                                                   register_user, api):
    """A web instance of its own, killed and started again on the same port: the page says so,
    reconnects, subscribes again and catches up with what happened meanwhile."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**stack_env, "API_HOST": "127.0.0.1", "API_PORT": str(port)}

    def start():
        procs.spawn("gunicorn-browser", web_command(port), env)
        own = API(base)

        def up(_):
            try:
                return own.get("/healthz").status_code == 200
            except Exception:  # noqa: BLE001 - not up yet
                return False
        WebDriverWait(None, 60, poll_frequency=0.2).until(up, "gunicorn did not start")

    _, token = register_user("r")
    post = api.create("post", token, title="Reconnect 重新连接")
    likes = f'[data-count="post:{post["id"]}:likes"]'
    start()
    try:
        page = browser(allow_console_errors=True)  # the failed reconnection attempts log errors
        page.get(f"{base}/posts/{post['id']}")
        wait(page, lambda d: text_of(d, "main h1") == "Reconnect 重新连接")
        live(page)
        mark_page(page)
        # The instance dies (SIGKILL to its process group: no goodbye to the browser).
        proc = procs.proc("gunicorn-browser")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        procs.stop("gunicorn-browser")
        wait(page, lambda d: text_of(d, "#live") == "reconnecting")
        _, other = register_user("r")
        assert api.act(other, "like", "post", post["id"]).status_code == 200  # missed meanwhile
        start()
        live(page)
        wait(page, lambda d: text_of(d, likes) == "1", message="the missed like never showed")
        # Subscribed again: a new like arrives live.
        _, third = register_user("r")
        assert api.act(third, "like", "post", post["id"]).status_code == 200
        wait(page, lambda d: text_of(d, likes) == "2")
        assert not_reloaded(page)
    finally:
        procs.stop("gunicorn-browser")


def test_the_page_refuses_inline_script(browser):
    """The page's own CSP (the one nginx sends) is enforced, and a violation shows in the
    console, which every other test checks is free of them."""
    page = browser(allow_console_errors=True)
    page.get(page.base_url + "/")
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#post-feed"))
    page.execute_script("""
        const s = document.createElement('script');
        s.textContent = 'window.__inline_ran = 1';
        document.body.append(s);""")
    time.sleep(0.3)
    assert page.execute_script("return window.__inline_ran") is None
    assert any("Content Security Policy" in p for p in chromium.console_problems(page))
