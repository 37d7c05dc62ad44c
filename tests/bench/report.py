"""The report: each figure judged against its target, the lab's figures read from its
timings.json, and the table printed at the end (docs/performance.md and the README quote it)."""
from __future__ import annotations

import contextlib
import json

from bench.common import LAB_TIMINGS, ROOT


def judge(fig: dict) -> None:
    def met(key, ok, target):
        if key in fig:
            fig[key]["target"] = target
            fig[key]["met"] = bool(ok)

    f = {k: v for k, v in fig.items() if not (isinstance(v, dict) and "error" in v)}
    if "post_get" in f:
        met("post_get", (f["post_get"]["ratio"] or 0) >= 0.6, ">= 0.6 of healthz")
    if "views" in f:
        v = f["views"]
        met("views", (v["ratio"] or 0) >= 0.8 and v["exact"]
            and (v["db_writes_per_1000_views"] or 0) <= 10,
            ">= 0.8 of healthz, exact, <= 10 DB writes per 1,000 views")
    if "likes" in f:
        lk = f["likes"]
        met("likes", lk["exact"] and lk["converged_s"] is not None and lk["converged_s"] <= 2,
            "report; exact, converged within 2 s")
    if "comments" in f:
        c = f["comments"]
        met("comments", c["exact"] and c["converged_s"] is not None and c["converged_s"] <= 2,
            "report; exact, converged within 2 s")
    if "io_drain" in f:
        f["io_drain"]["target"] = "report the ratio"
    if "ws_hold" in f:
        w = f["ws_hold"]
        met("ws_hold", (w.get("opened") or 0) >= 10000
            and (w.get("rss_mib_per_1000") or 1e9) <= 60,
            ">= 10,000 open, <= 60 MiB RSS per 1,000")
    if "fanout" in f:
        fo = f["fanout"]
        met("fanout", fo.get("p99_ms") is not None and fo["p99_ms"] < 1000
            and fo.get("missing") == 0, "p99 < 1 s, none missing")
    if "latency" in f:
        met("latency", f["latency"]["p99_ms"] < 100, "p99 < 100 ms")
    if "search" in f:
        met("search", (f["search"]["p95_ms"] or 1e9) < 50, "p95 < 50 ms on one instance")
    if "lists" in f:
        met("lists", (f["lists"]["ratio"] or 0) >= 0.5, ">= 0.5 of one post's req/s, each list")
    if "seed" in f:
        met("seed", f["seed"]["views"]["met"] and f["seed"]["likes"]["met"],
            "CPU per counted view <= 1/3 of the seed's design, per counted like <= 1/2")


def lab_figures() -> dict:
    out = {"source": str(LAB_TIMINGS.relative_to(ROOT)), "nginx_vs_straight": None,
           "up_from_nothing_s": None, "converge_again_s": None, "measured": False}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(LAB_TIMINGS.read_text())
        for key, name in (("up_from_nothing", "up_from_nothing_s"),
                          ("converge_again", "converge_again_s")):
            if isinstance(data.get(key), dict):
                out[name] = data[key].get("seconds")
                out[name.replace("_s", "_at")] = data[key].get("at")
        if isinstance(data.get("nginx_vs_straight"), dict):
            out["nginx_vs_straight"] = data["nginx_vs_straight"].get("ratio")
            out["nginx_vs_straight_lb_own_core"] = data["nginx_vs_straight"].get("ratio_lb_own_core")
        out["measured"] = any(out[k] is not None for k in
                              ("up_from_nothing_s", "converge_again_s", "nginx_vs_straight"))
    return out


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.0f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def seed_rows(rows: list, x: dict) -> None:
    """--only seed: ours / the seed's design, per kind of action (seed_compare.py)."""
    o, s = x["ours"], x["seed"]
    rows.append((f"vs the seed's design (-w {s['views']['web_workers']}, a task per action): "
                 "ours / seed's", "", "", "ours/seed's", "", ""))
    for kind, task in (("views", "update_post_view_count"), ("likes", "update_post_counts")):
        a, b, r = o[kind], s[kind], x[kind]
        one = kind[:-1]
        rows.append((f"  {kind}: served/s", f"{fmt(a['served_per_s'])} / "
                     f"{fmt(b['served_per_s'])}", f"task per {one}: {task}",
                     fmt(r["served_per_s_ratio"]), "report", ""))
        rows.append((f"  {kind}: counted/s until drained (s after load)",
                     f"{fmt(a['counted_per_s'])} / {fmt(b['counted_per_s'])}",
                     f"{fmt(a['drain_after_load_s'])} / {fmt(b['drain_after_load_s'])} s, "
                     f"backlog max {fmt(a['backlog_max'])} / {fmt(b['backlog_max'])}",
                     fmt(r["counted_per_s_ratio"]), "report",
                     "" if a["drained"] and b["drained"] else "NOT DRAINED"))
        rows.append((f"  CPU ms per counted {one}, stack (web)",
                     f"{fmt(a['cpu_ms_per_counted']['stack'])} "
                     f"({fmt(a['cpu_ms_per_counted']['web'])}) / "
                     f"{fmt(b['cpu_ms_per_counted']['stack'])} "
                     f"({fmt(b['cpu_ms_per_counted']['web'])})", "",
                     f"{fmt(r['cpu_per_counted_ratio'])} ({fmt(r['web_cpu_per_counted_ratio'])})",
                     r["goal"], "yes" if r["met"] else "NO"))
    if x.get("seed_ack_failures"):
        rows.append(("  seed's worker: acks failed (redelivered: counted twice)",
                     fmt(x["seed_ack_failures"]), "kombu pool vs -c 1000", "", "report", ""))
    po, ps = o.get("polling") or {}, s.get("polling") or {}
    rows.append(("  long-polling requests failed, no sticky routing",
                 f"{fmt(po.get('failure_rate'))} / {fmt(ps.get('failure_rate'))}",
                 f"{fmt(ps.get('sessions'))} sessions, {fmt(ps.get('sessions_with_a_failure'))}"
                 " of the seed's hit", "", "ours 0", "yes" if po.get("failed") == 0 else "NO"))


def table(res: dict) -> str:
    f = {k: v for k, v in res["figures"].items() if not (isinstance(v, dict) and "error" in v)}
    failed = {k: v["error"] for k, v in res["figures"].items() if k not in f}
    m = res["machine"]
    rows = [("figure", "measured", "floor", "ratio", "target", "met")]

    def ok(x):
        return "-" if x.get("met") is None else ("yes" if x["met"] else "NO")

    def cpu_row(x):
        c, fl, cr = x.get("cpu_ms_per_req") or {}, x.get("floor_cpu_ms_per_req") or {}, \
            x.get("cpu_ratio") or {}
        if c:
            rows.append(("  CPU ms/request web (whole stack)",
                         f"{fmt(c.get('web'))} ({fmt(c.get('stack'))})",
                         f"{fmt(fl.get('web'))} ({fmt(fl.get('stack'))})",
                         f"{fmt(cr.get('web'))} ({fmt(cr.get('stack'))})", "", ""))

    h = f.get("healthz_rps", {})
    rows.append(("GET /healthz req/s (floor, all rounds)", fmt(h.get("value")),
                 f"rounds {fmt(h.get('min'))}..{fmt(h.get('max'))}", "", "", ""))
    if "post_get" in f:
        x = f["post_get"]
        rows.append(("GET /api/posts/<id> req/s (one post)", fmt(x["rps"]), fmt(x["floor_rps"]),
                     fmt(x["ratio"]), ">= 0.6", ok(x)))
        cpu_row(x)
    if "views" in f:
        x = f["views"]
        rows.append((f"views/s over {res['config']['posts']:,} posts", fmt(x["rps"]),
                     fmt(x["floor_rps"]), fmt(x["ratio"]), ">= 0.8", ok(x)))
        cpu_row(x)
        if x.get("cold"):
            c = x["cold"]
            # CPU per read, not a rate: wrk's run lasts its full -d even after every post was
            # read (thread:stop() ends the requests, not the clock).
            rows.append(("  first read of each post (cold): CPU ms/read",
                         f"{fmt((c.get('cpu_ms_per_req') or {}).get('web'))} "
                         f"({fmt((c.get('cpu_ms_per_req') or {}).get('stack'))})",
                         f"{fmt(c.get('requests'))} reads", "", "", ""))
        rows.append(("  views served = in PostgreSQL",
                     f"{fmt(x['views_served'])} = {fmt(x['views_in_db'])}", "", "",
                     "exact", "yes" if x["exact"] else "NO"))
        rows.append(("  DB writes per 1,000 views", fmt(x["db_writes_per_1000_views"]),
                     f"{x['view_batches']} batches", "", "<= 10", ""))
    if "likes" in f:
        x = f["likes"]
        rows.append(("likes/s over HTTP (many users)", fmt(x["rps"]), fmt(x["floor_rps"]),
                     fmt(x["ratio"]), "report", ""))
        cpu_row(x)
        rows.append(("  likes exact, converged after", f"{fmt(x['converged_s'])} s",
                     f"{fmt(x['likes_rows'])} likes", "", "exact, <= 2 s", ok(x)))
    if "comments" in f:
        x = f["comments"]
        rows.append(("comments created/s over HTTP (many users)", fmt(x["rps"]),
                     fmt(x["floor_rps"]), fmt(x["ratio"]), "report", ""))
        cpu_row(x)
        rows.append(("  comments exact, converged after", f"{fmt(x['converged_s'])} s",
                     f"{fmt(x['comments_added'])} comments", "", "exact, <= 2 s", ok(x)))
    if "io_drain" in f:
        x = f["io_drain"]
        rows.append(("io queue: update_post_counts/s", fmt(x["counter_per_s"]),
                     f"no-op {fmt(x['noop_per_s'])}/s", fmt(x["ratio"]), "report", "-"))
    if "latency" in f:
        x = f["latency"]
        rows.append((f"GET post p50/p99 at {fmt(x['achieved_fraction'])} of saturation",
                     f"{fmt(x['p50_ms'])} / {fmt(x['p99_ms'])} ms",
                     f"{fmt(x['rps'])} of {fmt(x['saturating_rps'])} req/s", "",
                     "p99 < 100 ms", ok(x)))
    if "ws_hold" in f:
        x = f["ws_hold"]
        rows.append(("websockets open at once (1 instance)", fmt(x.get("opened")),
                     f"of {fmt(x.get('wanted'))}", "", ">= 10,000", ok(x)))
        rows.append(("  RSS per 1,000 websockets", fmt(x.get("rss_mib_per_1000"), " MiB"),
                     f"{fmt(x.get('rss_base_mib'))} -> {fmt(x.get('rss_peak_mib'))} MiB", "",
                     "<= 60 MiB", ""))
    if "fanout" in f:
        x = f["fanout"]
        rows.append((f"counts fan-out to {fmt(x.get('subscribed'))} subscribers p50/p99",
                     f"{fmt(x.get('p50_ms'))} / {fmt(x.get('p99_ms'))} ms",
                     f"missing {fmt(x.get('missing'))}", "", "p99 < 1 s", ok(x)))
    if "seed" in f:
        seed_rows(rows, f["seed"])
    if "search" in f:
        x = f["search"]
        rows.append((f"search p50/p95 at {fmt(x['posts'])} posts (6 queries, {x['conns']} conns)",
                     f"{fmt(x['p50_ms'])} / {fmt(x['p95_ms'])} ms",
                     f"one post {fmt(x['floor']['p50_ms'])} / {fmt(x['floor']['p95_ms'])} ms",
                     fmt(x["ratio"]), "p95 < 50 ms", ok(x)))
    if "lists" in f:
        x = f["lists"]
        for name, what in (("front", "front page GET /api/posts"), ("hot", "?sort=hot"),
                           ("deep_new", "cursor 90 % deep, new"),
                           ("deep_hot", "cursor 90 % deep, hot")):
            y = x[name]
            rows.append((f"{what} req/s at {fmt(x['posts'])} posts", fmt(y["rps"]),
                         f"one post {fmt(x['post_get_rps'])}", fmt(y["ratio"]), ">= 0.5",
                         "yes" if (y["ratio"] or 0) >= 0.5 else "NO"))
            rows.append(("  p50 ms; CPU ms/request web (whole stack)",
                         f"{fmt(y['p50_ms'])}; {fmt(y['cpu_ms_per_req'].get('web'))} "
                         f"({fmt(y['cpu_ms_per_req'].get('stack'))})",
                         f"{fmt(x['post_get_p50_ms'])}; "
                         f"{fmt(x['post_get_cpu_ms_per_req'].get('web'))} "
                         f"({fmt(x['post_get_cpu_ms_per_req'].get('stack'))})", "", "", ""))
    for key, err in failed.items():
        rows.append((f"{key}: FAILED", err.splitlines()[0][:60], "", "", "", "NO"))
    lab = f.get("lab", {})
    own = lab.get("nginx_vs_straight_lb_own_core")
    rows.append(("through nginx vs straight (lab): lb own core / shared cores",
                 f"{fmt(own)} / {fmt(lab.get('nginx_vs_straight'))}", "same instances", "",
                 ">= 0.85", "not measured" if own is None else ("yes" if own >= 0.85 else "NO")))
    rows.append(("make lab from nothing / converge again",
                 f"{fmt(lab.get('up_from_nothing_s'))} / {fmt(lab.get('converge_again_s'))} s",
                 "timings.json" if lab.get("measured") else "not measured", "",
                 "2nd < 60 s", "" if lab.get("converge_again_s") is None
                 else ("yes" if lab["converge_again_s"] < 60 else "NO")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = [f"machine: {m['nproc']} x {m['cpu_model']}, load {m['load_before'][0]} before / "
           f"{m['load_after'][0]} after (1-min; max {m['load1_max']}, mean {m['load1_mean']})"]
    for i, r in enumerate(rows):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)
