"""A small HTTP client for the tests: JSON in, (status, JSON) out, bearer tokens by user."""
from __future__ import annotations

import uuid

import requests


class API:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str | None = None, json=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        resp = self.http.request(method, self.base_url + path, json=json, headers=headers,
                                 timeout=30, **kwargs)
        return resp

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def patch(self, path, **kw):
        return self.call("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def register(self, prefix: str = "u") -> tuple[dict, str]:
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        resp = self.post("/api/auth/register", json={"username": name, "password": "correct-horse"})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return body["user"], body["token"]

    def create(self, kind: str, token: str, title="A title", content="Some content") -> dict:
        resp = self.post(f"/api/{kind}s", token=token, json={"title": title, "content": content})
        assert resp.status_code == 201, resp.text
        return resp.json()

    def items_with_comments(self, token: str) -> dict[str, int]:
        """A post and an article by token's user, each with one comment of theirs: their ids
        as {"post", "post_comment", "article", "article_comment"}."""
        ids = {}
        for kind in ("post", "article"):
            ids[kind] = self.create(kind, token)["id"]
            ids[f"{kind}_comment"] = self.post(f"/api/{kind}s/{ids[kind]}/comments", token=token,
                                               json={"content": "c"}).json()["id"]
        return ids

    def act(self, token: str, action: str, target_type: str, target_id: int, undo=False):
        return self.call("DELETE" if undo else "POST", "/api/actions", token=token,
                         json={"action": action, "target_type": target_type,
                               "target_id": target_id})

    def counts(self, kind: str, item_id: int) -> dict:
        resp = self.get(f"/api/{kind}s/{item_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()["counts"]
