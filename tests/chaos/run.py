"""`make chaos`: fault scenarios against the lab under a steady mixed load (docs/reliability.md).

    .venv/bin/python tests/chaos/run.py [--only NAME[,NAME...]] [--list]

Each scenario starts a load (load.py) on fresh targets, injects its fault, lets the system
settle, then compares what clients were told succeeded (2xx) with what PostgreSQL holds and what
the API counts (accounting.py). Prints a table and writes .cache/chaos/results.json. Exit status
1 when a scenario breaks a guarantee.

Where to look: labhosts.py (the lab's hosts and probes), accounting.py (one scenario's load and its
verdict), scenarios/ (the faults, one module per kind).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accounting import LOAD_THREADS, USERS  # noqa: E402
from labhosts import INVENTORY, LAB_ID, RESULTS, log  # noqa: E402
from scenarios import SCENARIOS  # noqa: E402


# ------------------------------------------------------------------ report
def table(results: list[dict]) -> str:
    head = ["scenario", "acked", "counted", "lost", "views acked/lost", "failed requests",
            "recovery s", "resub gap s", "result"]
    rows = [head]
    for r in results:
        failed = ", ".join(f"{k}:{v}" for k, v in sorted(r["failed"].items())) or "0"
        if n := len(r.get("stale_connection_retries") or ()):
            failed += f" ({n} stale keep-alive resent)"
        rows.append([r["scenario"], str(r["acknowledged"]), str(r["counted"]), str(r["lost"]),
                     f"{r['views_acknowledged']}/{r['views_lost']}"
                     + (f" ({n} uncounted)" if (n := r.get("views_served_uncounted")) else ""),
                     failed,
                     "-" if r["recovery_s"] is None else str(r["recovery_s"]),
                     str(r["socketio"]["max_resubscribe_gap_s"] or "-"),
                     "PASS" if r["passed"] else
                     "FAIL: " + "; ".join(k for k, v in r["checks"].items() if not v)
                     + (f" ({r['error'][:160]})" if r.get("error") else "")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated scenario names: " + ",".join(SCENARIOS))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    if not INVENTORY.exists():
        print(f"no lab inventory at {INVENTORY}: run `LAB_ID={LAB_ID} make lab` first", file=sys.stderr)
        return 2
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: list[dict] = []

    def save() -> dict:
        doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": "make chaos " + " ".join(sys.argv[1:]), "lab_id": LAB_ID,
               "load": {"users": USERS, "threads": LOAD_THREADS, "socketio_clients": 4,
                        "mix": "30% like/unlike, 15% collect/uncollect, 10% share, 10% comment, "
                               "35% view, on 3 posts + 1 article per scenario"},
               "total_s": round(time.monotonic() - t0, 1), "results": results}
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n")  # after each scenario
        return doc

    for name in names:
        try:
            results += SCENARIOS[name]()
        except Exception as e:  # noqa: BLE001 - record and go on with the next scenario
            log(f"{name}: ERROR {type(e).__name__}: {e}")
            results.append({"scenario": name, "error": f"{type(e).__name__}: {e}", "passed": False,
                            "acknowledged": 0, "counted": 0, "lost": 0, "views_acknowledged": 0,
                            "views_lost": 0, "failed": {}, "recovery_s": None,
                            "socketio": {"max_resubscribe_gap_s": None}, "checks": {"ran": False}})
        save()
    total = save()["total_s"]
    print()
    print(table(results))
    print(f"\n{len(results)} scenario runs in {total:.0f} s; results: {RESULTS}")
    passed = sum(1 for r in results if r["passed"])
    print(f"chaos: {passed} passed, {len(results) - passed} failed")  # CI reads this line
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
