#!/usr/bin/env python3
"""The bench's pictures, from a results JSON (matplotlib, Agg: no display needed):

    bench-latency.png  the latency distribution of each request kind measured (wrk's percentiles,
                       `pcts_ms`): ms on a log scale against the percentile on a "nines" scale
    bench-vs-seed.png  ours against the seed's design (`--only seed`): CPU per counted action,
                       served and counted rates, the backlog over time, long-polling failures

run.py draws them after every run into DATA (or --plots DIR); by hand:

    .venv/bin/python tests/bench/plots.py .data/bench/results.json --out docs/img
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

LATENCY_PNG = "bench-latency.png"
VS_SEED_PNG = "bench-vs-seed.png"
TICKS = (10, 50, 75, 90, 95, 99, 99.9, 99.99)
OURS, SEED = "#1f77b4", "#d62728"


def nines(p: float) -> float:
    """Percentile -> position on the axis: 90 -> 1, 99 -> 2, 99.9 -> 3 (the tail spread out)."""
    return -math.log10(1.0 - min(p, 99.999) / 100.0)


def latency_series(res: dict) -> tuple[list, list]:
    """([(label, pcts_ms)] of SynSpirit's request kinds, [(label, pcts_ms, color, style)] of the
    seed comparison's runs)."""
    f = res["figures"]
    ok = {k: v for k, v in f.items() if isinstance(v, dict) and "error" not in v}
    kinds = []
    for key, label in (("healthz_rps", "GET /healthz (floor)"),
                       ("post_get", "GET /api/posts/<id>, one post"),
                       ("views", "GET /api/posts/<id>, many posts (views)"),
                       ("likes", "POST /api/actions (like)"),
                       ("comments", "POST /api/posts/<id>/comments"),
                       ("latency", "GET post, open loop at ~70 % of saturation")):
        if ok.get(key, {}).get("pcts_ms"):
            kinds.append((label, ok[key]["pcts_ms"]))
    seed = []
    if "seed" in ok:
        s = ok["seed"]
        workers = s["seed"]["views"]["web_workers"]
        for kind, style in (("views", "-"), ("likes", "--")):
            for design, color, name in (("ours", OURS, "ours (1 worker)"),
                                        ("seed", SEED, f"seed's (-w {workers})")):
                x = s[design][kind]
                if x.get("pcts_ms"):
                    seed.append((f"{kind}: {name}", x["pcts_ms"], color, style))
    return kinds, seed


def _percentile_axes(ax, title: str) -> None:
    ax.set_yscale("log")
    ax.set_xticks([nines(p) for p in TICKS], [f"{p:g}" for p in TICKS])
    ax.set_xlim(nines(TICKS[0]) - 0.02, nines(TICKS[-1]) + 0.1)
    ax.set_xlabel("percentile of requests (nines scale)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def plot_latency(res: dict, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    kinds, seed = latency_series(res)
    if not kinds and not seed:
        return None
    panels = 2 if seed else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 5.2), squeeze=False)
    ax = axes[0][0]
    conns = res["config"].get("wrk_conns")
    for label, pcts in kinds:
        pts = [(nines(p), ms) for p, ms in pcts if p >= TICKS[0] and ms > 0]
        ax.plot(*zip(*pts, strict=True), marker=".", label=label)
    _percentile_axes(ax, f"Latency per request kind (wrk, {conns} connections, closed loop "
                         "except the open-loop run)")
    if seed:
        ax = axes[0][1]
        for label, pcts, color, style in seed:
            pts = [(nines(p), ms) for p, ms in pcts if p >= TICKS[0] and ms > 0]
            ax.plot(*zip(*pts, strict=True), marker=".", color=color, linestyle=style,
                    label=label)
        _percentile_axes(ax, "Ours vs the seed's design, same load (seed scenario)")
    return _save(fig, res, out / LATENCY_PNG)


def _save(fig, res: dict, path: Path) -> Path:
    """Title the figure with the run's machine, write it, free it."""
    import matplotlib.pyplot as plt
    fig.suptitle(_subtitle(res), fontsize=9, y=0.995)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _subtitle(res: dict) -> str:
    m = res["machine"]
    return (f"make bench {'--quick ' if res.get('quick') else ''}{res['started_at']}: "
            f"{m['nproc']} x {m['cpu_model']}, 1-min load {m['load_before'][0]} before, "
            f"max {m['load1_max']} (a shared machine: compare ratios, not absolute figures)")


def _bars(ax, groups: list[str], ours: list, seed: list, workers: int, fmt: str) -> None:
    width = 0.38
    xs = range(len(groups))
    for off, vals, color, name in ((-width / 2, ours, OURS, "ours (1 web worker)"),
                                   (width / 2, seed, SEED, f"seed's design (-w {workers})")):
        bars = ax.bar([x + off for x in xs], [v or 0 for v in vals], width, color=color,
                      label=name)
        for b, v in zip(bars, vals, strict=True):
            if v is not None:
                ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), groups, fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot_vs_seed(res: dict, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    s = res["figures"].get("seed")
    if not isinstance(s, dict) or "error" in s:
        return None
    o, d = s["ours"], s["seed"]
    workers = d["views"]["web_workers"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))

    ax = axes[0][0]
    _bars(ax, ["per counted view", "per counted like"],
          [o["views"]["cpu_ms_per_counted"]["stack"], o["likes"]["cpu_ms_per_counted"]["stack"]],
          [d["views"]["cpu_ms_per_counted"]["stack"], d["likes"]["cpu_ms_per_counted"]["stack"]],
          workers, "{:.2f} ms")
    ax.set_ylabel("CPU ms (web + io worker + Redis + PostgreSQL)")
    ax.set_title("Whole stack's CPU per counted action (lower is better)\n"
                 f"ours/seed's: views {s['views']['cpu_per_counted_ratio']} (goal <= 0.333), "
                 f"likes {s['likes']['cpu_per_counted_ratio']} (goal <= 0.5)", fontsize=10)

    ax = axes[0][1]
    _bars(ax, ["views served", "views counted", "likes served", "likes counted"],
          [o["views"]["served_per_s"], o["views"]["counted_per_s"],
           o["likes"]["served_per_s"], o["likes"]["counted_per_s"]],
          [d["views"]["served_per_s"], d["views"]["counted_per_s"],
           d["likes"]["served_per_s"], d["likes"]["counted_per_s"]], workers, "{:,.0f}")
    ax.set_ylabel("actions per second")
    ax.set_title("Rates: served while the load ran; counted in PostgreSQL\n"
                 "from the start of the load until the backlog was drained", fontsize=10)

    ax = axes[1][0]
    for design, color, name in (("ours", OURS, "ours: io queue"),
                                ("seed", SEED, f"seed's: {d['views']['queue']} queue")):
        for kind, style in (("views", "-"), ("likes", "--")):
            pts = s[design][kind].get("backlog") or []
            if pts:
                ax.plot(*zip(*pts, strict=True), color=color, linestyle=style,
                        label=f"{kind}, {name}")
        for kind in ("views",):
            ax.axvline(s[design][kind]["load_s"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("seconds since the load started (dotted: the load ended)")
    ax.set_ylabel("tasks waiting in the queue")
    ax.set_title("Backlog over time (tasks queued, sampled every 0.25 s)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1][1]
    po, ps = o.get("polling") or {}, d.get("polling") or {}
    rates = [100 * (po.get("failure_rate") or 0), 100 * (ps.get("failure_rate") or 0)]
    bars = ax.bar(["ours (1 web worker)", f"seed's (-w {workers})"], rates,
                  color=[OURS, SEED], width=0.5)
    for b, v in zip(bars, rates, strict=True):
        ax.annotate(f"{v:.1f} %", (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 100)
    ax.set_ylabel("requests failed (%)")
    ax.set_title(f"Socket.IO long-polling without sticky routing: {ps.get('sessions')} "
                 "sessions,\nrequests after the handshake answered 400 \"Invalid session\"",
                 fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)

    return _save(fig, res, out / VS_SEED_PNG)


def make_plots(res: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    return [p for p in (plot_latency(res, out), plot_vs_seed(res, out)) if p]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="a results JSON of tests/bench/run.py")
    ap.add_argument("--out", default=".", help="folder for the PNGs (e.g. docs/img)")
    args = ap.parse_args()
    for path in make_plots(json.loads(Path(args.results).read_text()), Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
