"""--profile: py-spy records of the web worker (or the io worker) while a scenario runs, as
collapsed stacks in DATA/profiles/<scenario>.collapsed, and a top-frames summary of each next
to it (<scenario>.top.txt)."""
from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

from testkit.processes import VENV_BIN


def profiled(stack, name: str, secs: float, pid: int | None = None):
    """py-spy record of the web worker (or pid) for secs, when --profile."""
    if not stack.args.profile:
        return None
    pyspy = VENV_BIN / "py-spy"
    prof_dir = stack.data / "profiles"
    prof_dir.mkdir(parents=True, exist_ok=True)
    out = prof_dir / f"{name}.collapsed"
    return (subprocess.Popen(
        [str(pyspy), "record", "--pid", str(pid or stack.web_pid), "--duration",
         str(max(1, int(secs))), "--rate", "100", "--nonblocking", "--format", "raw",
         "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)


def finish_profile(handle) -> str | None:
    """Wait for a record to end, write its summary next to it: the summary's path (None when
    not profiling or py-spy wrote nothing)."""
    if handle is None:
        return None
    proc, out = handle
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(60)
    if proc.poll() is None:
        proc.kill()
    if not out.exists():
        return None
    summary = summarize_profile(out)
    out.with_suffix(".top.txt").write_text(summary)
    return str(out.with_suffix(".top.txt"))


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per frame from py-spy's collapsed stacks."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r"^/.*?/site-packages/", "", f) for f in stack.split(";")]
        frames = [re.sub(r"\(/\S*?/(backend|tests)/", r"(\1/", f) for f in frames]
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    lines = [f"{path.name}: {total} samples (CPU-busy only, 100 Hz)", "", "self %  frame"]
    for f, c in sorted(self_c.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"{100.0 * c / max(total, 1):6.1f}  {f}")
    lines += ["", "incl %  frame"]
    for f, c in sorted(incl.items(), key=lambda x: -x[1])[:top * 2]:
        lines.append(f"{100.0 * c / max(total, 1):6.1f}  {f}")
    return "\n".join(lines) + "\n"
