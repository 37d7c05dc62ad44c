"""Rewrite the ?v= of every asset URL in site/index.html after an asset changed:
   cd backend && ../.venv/bin/python -m app.web.stamp
(tests/backend/web/test_page.py fails until it is done)."""
from __future__ import annotations

from . import SITE, stamp


def main() -> None:
    index = SITE / "index.html"
    before = index.read_text(encoding="utf-8")
    after = stamp(before)
    if after != before:
        index.write_text(after, encoding="utf-8")
        print(f"{index}: asset versions updated")
    else:
        print(f"{index}: up to date")


if __name__ == "__main__":
    main()
