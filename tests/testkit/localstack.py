"""Private PostgreSQL and Redis for a test session or the bench: backend/scripts/localstack.sh
driven from Python."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

LOCALSTACK = Path(__file__).resolve().parents[2] / "backend" / "scripts" / "localstack.sh"


class LocalstackError(RuntimeError):
    pass


def exports(text: str) -> dict[str, str]:
    """The variables of `export K='V'` lines (what localstack.sh prints for a shell to eval)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            out[key] = shlex.split(value)[0] if value.strip() else ""
    return out


def localstack(*args: str, timeout: float = 900) -> dict[str, str]:
    """Run `localstack.sh ARGS...` (start, resetdb, ...); return the variables it exports.
    Its messages go to our stderr."""
    done = subprocess.run(["bash", str(LOCALSTACK), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if done.stderr.strip():
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise LocalstackError(f"localstack.sh {' '.join(args)} failed ({done.returncode}):\n"
                              f"{done.stderr[-3000:]}")
    return exports(done.stdout)


def stop(data_dir: Path, what: str = "", remove: str = "") -> None:
    """Stop the PostgreSQL/Redis of a data directory (what: "pg", "redis" or both). remove="data"
    also deletes their data, remove="all" the whole directory."""
    subprocess.run(["bash", str(LOCALSTACK), "stop", str(data_dir), *([what] if what else [])],
                   capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    if not remove:
        return
    pg = data_dir / "pg"
    targets = [data_dir] if remove == "all" else [data_dir / "redis", pg]
    if pg.is_symlink():  # data kept under /var/tmp (see localstack.sh)
        targets.append(pg.resolve().parent)
    for target in targets:
        if target.is_symlink():
            target.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)
