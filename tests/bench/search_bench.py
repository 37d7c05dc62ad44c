"""The `search` scenario: GET /api/search over search_posts (100,000) posts of Chinese and
English words, against GET /api/posts/<id> (one post) measured in the same run.

- Data: posts inserted with one INSERT ... SELECT generate_series, each a title of 3 and a
  content of 40 words drawn from a vocabulary of Chinese words (written without spaces, as
  Chinese is) and English words, Zipf-distributed (word k drawn with a probability near
  1 / k: floor(V ^ random())), then indexed by `flask --app app search index-missing` (the
  same statement that indexes rows written by SQL in production) and VACUUM ANALYZEd.
- Queries: six, each matching more than 1,000 posts (their counts are checked and reported):
  a frequent Chinese word, a rarer one, an English word, Chinese and English together, a
  four-character Chinese query cut by jieba, a three-character word as a phrase.
- Load: 4 connections (wrk), the six queries in turn, interleaved in rounds with the same
  connections on GET /api/posts/<id>; p50/p95/p99 of each, the search p95 against the target
  (< 50 ms on one instance) and the ratio of the rates.
"""
from __future__ import annotations

import random
import subprocess
import sys
import time
from urllib.parse import quote

from bench.common import BenchError, log, ratio
from bench.load import LUA_SEED, combine, lua_list, wrk
from testkit.processes import BACKEND, VENV_BIN

# Frequent words first: the Zipf ranks follow this order (Chinese and English alternate).
CHINESE = ("知乎 回答 问题 我们 一个 没有 什么 中国 时间 工作 学习 生活 朋友 技术 社区 文章 喜欢 "
           "觉得 因为 所以 可以 已经 现在 自己 这个 非常 公司 数据 系统 城市 北京 上海 电影 音乐 "
           "历史 文化 经济 科学 教育 健康 旅行 美食 手机 电脑 程序 设计 产品 用户 市场 发展").split()
ENGLISH = ("the python search index query database server client model people world "
           "system water music city story school market design product data science "
           "health travel history culture money power light energy").split()
# Common characters, for made-up two-character words.
_CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
          "同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自"
          "二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日"
          "那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变"
          "条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
          "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
          "几九区强放决西被干做必战先回则任取据处府研")


def vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    """size words: the listed ones, then made-up two-character Chinese words and English-like
    words, alternating; English words carry their spaces, Chinese ones none."""
    zh = list(CHINESE)
    seen = set(zh)
    while len(zh) < size // 2:
        w = rng.choice(_CHARS) + rng.choice(_CHARS)
        if w not in seen:
            seen.add(w)
            zh.append(w)
    en = list(ENGLISH)
    seen = set(en)
    while len(en) < size // 2:
        w = "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        if w not in seen:
            seen.add(w)
            en.append(w)
    words = []
    for a, b in zip(zh, en, strict=True):
        words += [a, f" {b} "]
    return words


QUERIES = {  # name: q
    "zh_frequent": "知乎",
    "zh_rarer": "学习",
    "en": "python",
    "zh_en": "回答 python",
    "zh_jieba": "中国文化",
    "zh_phrase": "知乎回",
}


class SearchBench:
    def __init__(self, scenarios):
        self.s = scenarios
        self.stack = scenarios.stack
        self.p = scenarios.p

    def seed(self, n: int) -> dict:
        rng = random.Random(17)
        words = vocabulary(rng)
        authors = [u["id"] for u in self.stack.users]
        t0 = time.monotonic()
        with self.stack.pg.cursor() as cur:
            # Correlated with i (WHERE i > 0): PostgreSQL would otherwise compute the word
            # choices once for all rows.
            cur.execute("""
                INSERT INTO posts (author_id, title, content, created_at, updated_at)
                SELECT (%(authors)s::int[])[1 + i %% %(na)s],
                       (SELECT string_agg((%(words)s::text[])[floor(power(%(v)s, random()))::int],
                                          '') FROM generate_series(1, 3) AS j WHERE i > 0),
                       (SELECT string_agg((%(words)s::text[])[floor(power(%(v)s, random()))::int],
                                          '') FROM generate_series(1, 40) AS j WHERE i > 0),
                       now() - interval '50 days' - i * interval '1 second',
                       now() - interval '50 days'
                FROM generate_series(1, %(n)s) AS i""",
                        {"authors": authors, "na": len(authors), "words": words,
                         "v": len(words), "n": n})
        inserted = time.monotonic() - t0
        t1 = time.monotonic()
        done = subprocess.run([str(VENV_BIN / "flask"), "--app", "app", "search",
                               "index-missing"], cwd=BACKEND, env=self.stack.env,
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise BenchError(f"search index-missing failed:\n{done.stderr[-3000:]}")
        indexed = time.monotonic() - t1
        with self.stack.pg.cursor() as cur:
            cur.execute("VACUUM ANALYZE posts")
            cur.execute("VACUUM ANALYZE post_search")
        log(f"search: {n:,} posts inserted in {inserted:.1f} s, indexed in {indexed:.1f} s "
            f"({done.stdout.strip()})")
        return {"insert_s": round(inserted, 1), "index_s": round(indexed, 1),
                "index_missing": done.stdout.strip()}

    def matches(self, q: str) -> dict:
        """What the API says about q (total, first page) and how many posts really match."""
        import requests

        r = requests.get(f"{self.stack.url}/api/search", params={"q": q}, timeout=60)
        if r.status_code != 200:
            raise BenchError(f"search: {q!r} answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        if str(BACKEND) not in sys.path:
            sys.path.insert(0, str(BACKEND))
        from app.search import parse_query, tsquery_sql

        cjk, other = parse_query(q)
        with self.stack.pg.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM post_search WHERE vector @@ "
                        f"{tsquery_sql(cjk, other)}", {"cjk": cjk, "other": other})
            found = cur.fetchone()[0]
        # alone, one request at a time: what each query costs without the others' load
        session, took = requests.Session(), []
        for _ in range(self.p["search_alone"]):
            t0 = time.perf_counter()
            session.get(f"{self.stack.url}/api/search", params={"q": q}, timeout=60)
            took.append((time.perf_counter() - t0) * 1000)
        took.sort()
        return {"q": q, "matches": found, "total": body["total"],
                "total_exact": body["total_exact"], "items": len(body["items"]),
                "alone_p50_ms": round(took[len(took) // 2], 2),
                "alone_p95_ms": round(took[int(len(took) * 0.95)], 2)}

    def run(self) -> dict:
        n = self.p["search_posts"]
        out: dict = {"posts_added": n, **self.seed(n)}
        out["posts"] = int(self.stack.sql("SELECT count(*) FROM posts"))
        out["queries"] = {name: self.matches(q) for name, q in QUERIES.items()}
        few = {k: v["matches"] for k, v in out["queries"].items() if v["matches"] <= 1000}
        if few and n >= 50_000:
            raise BenchError(f"search: queries matching 1,000 posts or fewer: {few}")
        paths = [f"/api/search?q={quote(q)}" for q in QUERIES.values()]
        script = (f"local paths = {lua_list(paths)}\nlocal n = #paths\nlocal k = 0\n"
                  + LUA_SEED % random.randrange(1 << 30)
                  + "function request()\n  k = k % n + 1\n  return wrk.format(\"GET\", "
                    "paths[k])\nend\n")
        floor_path = f"/api/posts/{self.stack.post_ids[0]}"
        conns, secs = 4, self.p["search_secs"]
        wrk(self.stack, "warm", script, "/", self.p["warm_secs"], conns)
        wrk(self.stack, "warm", "", floor_path, self.p["warm_secs"], conns)
        runs: dict[str, list] = {"search": [], "floor": []}
        for i in range(self.p["rounds"]):
            runs["search"].append(wrk(self.stack, f"search_{i}", script, "/", secs, conns))
            runs["floor"].append(wrk(self.stack, f"search_floor_{i}", "", floor_path, secs,
                                     conns))
        for kind, rs in runs.items():
            x = combine(rs)
            req = sum(r["requests"] for r in rs) or 1
            out[kind] = {"rps": x["rps"], "p50_ms": x["p50_ms"],
                         "p95_ms": round(sum(r["p95_ms"] * r["requests"] for r in rs) / req, 2),
                         "p99_ms": x["p99_ms"], "non_2xx": x["non_2xx"],
                         "cpu_ms_per_req": x["cpu_ms_per_req"], "rounds_rps": x["rounds_rps"],
                         "load1": x["load1"], "command": x["command"]}
        out["conns"] = conns
        out["p50_ms"], out["p95_ms"] = out["search"]["p50_ms"], out["search"]["p95_ms"]
        out["ratio"] = ratio(out["search"]["rps"], out["floor"]["rps"])
        out["p95_vs_floor"] = ratio(out["search"]["p95_ms"], out["floor"]["p95_ms"])
        log(f"search at {out['posts']:,} posts: p50 {out['p50_ms']} ms, p95 {out['p95_ms']} "
            f"ms ({out['search']['rps']} req/s) vs one post p50 {out['floor']['p50_ms']} ms, "
            f"p95 {out['floor']['p95_ms']} ms ({out['floor']['rps']} req/s): ratio "
            f"{out['ratio']}")
        return out
