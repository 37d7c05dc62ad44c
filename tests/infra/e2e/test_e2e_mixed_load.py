"""End to end through nginx under a community's mix (`run.py --lab-mixed --quick`): reads of
hot and cold posts, the front page, likes and unlikes, comments and logins from many users at
once, while websocket subscribers wait for the live counts. Every request is answered, every
subscriber gets every count. The figures themselves are for docs/performance.md, not gated."""
import json
import os
import subprocess
import sys

from conftest import REPO

KINDS = {"hot", "cold", "front", "like", "comment", "login"}


def test_the_site_answers_a_mixed_load_and_pushes_every_count(tmp_path):
    out = tmp_path / "mixed.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/bench/run.py"), "--lab-mixed", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    for phase in ("saturation", "open"):
        assert res[phase]["errors"] == 0, (phase, res[phase]["error_samples"])
    seen = {kind for kind, k in res["saturation"]["kinds"].items() if k["count"]}
    seen |= {kind for kind, k in res["open"]["kinds"].items() if k["count"]}
    assert KINDS <= seen, f"request kinds never answered: {KINDS - seen}"
    fan = res["fanout"]
    assert fan["subscribed"] == res["subscribers"] and fan["failed"] == 0
    assert fan["rounds"] > 0 and fan["missing"] == 0, fan
    for kind in ("like", "comment"):
        assert res["write_path"][kind]["errors"] == 0 and res["write_path"][kind]["ok"] > 0
    assert res["open"]["cpu_ms_per_request"]["web"] > 0
