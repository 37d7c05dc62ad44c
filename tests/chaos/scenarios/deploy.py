"""A rolling deploy of a new release under load: site.yml with `--tags python,synspirit`, the
application-only run of docs/operations.md (the whole site.yml took 11.5 min under the chaos
load on a quiet 2-core machine, 2026-12-02, for roles whose converge test_converge.py checks)."""
from __future__ import annotations

import json
import os
import subprocess
import time

from accounting import Run
from labhosts import INVENTORY, REPO, RESULTS, WEB, log, ssh


def s_rolling_deploy() -> list[dict]:
    with Run("rolling deploy") as run:
        release = f"chaos-{int(time.time())}"
        env = {**os.environ, "PATH": f"{REPO}/.venv/bin:{os.environ['PATH']}",
               "ANSIBLE_FORCE_COLOR": "0"}
        cmd = ["ansible-playbook", "-i", str(INVENTORY), "site.yml", "--tags", "python,synspirit",
               "-e", json.dumps({"synspirit_extra_env": {"SYNSPIRIT_RELEASE": release}})]
        log(f"rolling deploy: {' '.join(cmd)}")
        t = time.monotonic()
        r = subprocess.run(cmd, cwd=REPO / "ansible", env=env, capture_output=True, text=True,
                           timeout=1800)
        took = time.monotonic() - t
        logfile = RESULTS.parent / "rolling-deploy.log"
        logfile.write_text(r.stdout + r.stderr)
        run.checks["playbook succeeded"] = r.returncode == 0
        restarted = r.stdout.count("RUNNING HANDLER [synspirit : Restart")
        run.notes.append(f"SYNSPIRIT_RELEASE={release}; playbook {took:.0f} s (log {logfile}); "
                         f"restart handler ran {restarted}x")
        release_on = [ssh(h, "grep -c SYNSPIRIT_RELEASE=" + release + " /etc/synspirit/synspirit.env",
                          check=False).strip() == "1" for h in WEB]
        run.checks["new version on every web host"] = all(release_on)
        time.sleep(5)
        return [run.finish(took, allowed=set(), max_gap=5)]
