"""The README's picture of the web page: seeds a running SynSpirit with a few posts and
articles (Chinese and English), likes and comments, then photographs the front page and a post
in headless Chromium.

    ./start.sh &   # or any running SynSpirit
    .venv/bin/python tests/backend/browser/screenshot.py http://127.0.0.1:5000 docs/img [POST_ID]
(with POST_ID: no seeding, that post photographed)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testkit import browser as chromium  # noqa: E402
from testkit.apiclient import API  # noqa: E402
from testkit.browser import text_of, wait  # noqa: E402

POSTS = [
    ("周末读书会：《三体》第二部",
     "这周六下午三点，在图书馆二楼。欢迎带上你最喜欢的段落，我们一起讨论“黑暗森林”。"),
    ("How do you keep a reading habit?", "Twenty pages every morning before opening the laptop. "
     "What works for you?"),
    ("有没有推荐的 Python 入门书？", "想从零开始学编程，最好是中文的，有练习题。"),
]
ARTICLES = [
    ("为什么计数要从行里重新算",
     "# 幂等的计数\n\n点赞、收藏和评论都是**行**，计数只是缓存：任务重跑也不会出错。"),
    ("Live counts with Socket.IO and Redis", "# Live counts\n\nEvery like is a row; the count "
     "columns are caches recomputed by a background worker, then pushed to every subscriber."),
]


def seed(api: API) -> int:
    writers = [api.register("lin") for _ in range(3)]
    ids = []
    for i, (title, content) in enumerate(ARTICLES):
        ids.append(("article", api.create("article", writers[i % 3][1], title, content)["id"]))
    for i, (title, content) in enumerate(POSTS):
        ids.append(("post", api.create("post", writers[i % 3][1], title, content)["id"]))
    for kind, item_id in ids:
        for _, token in writers[: 1 + item_id % 3]:
            api.act(token, "like", kind, item_id)
        api.post(f"/api/{kind}s/{item_id}/comments", token=writers[1][1],
                 json={"content": "说得好！Well said."})
    return ids[-1][1]


def main() -> None:
    base, out = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) > 3:  # already seeded: the post to photograph
        post_id = int(sys.argv[3])
    else:
        post_id = seed(API(base))
        time.sleep(3)  # the counts reach the lists
    driver = chromium.start_chromium(base, 1200, 860)
    try:
        driver.get(base + "/")
        wait(driver, lambda d: len(d.find_elements("css selector", "#post-feed .card")) >= 3)
        time.sleep(1)
        driver.save_screenshot(str(out / "home.png"))
        driver.set_window_size(390, 844)
        driver.get(f"{base}/posts/{post_id}")
        wait(driver, lambda d: text_of(d, "#live") == "live")
        driver.save_screenshot(str(out / "post-phone.png"))
    finally:
        chromium.quit_chromium(driver)
    print(f"wrote {out / 'home.png'} and {out / 'post-phone.png'}")


if __name__ == "__main__":
    main()
