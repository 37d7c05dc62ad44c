"""backend/scripts/localstack.sh runs as root (start.sh, the test suite) and keeps a PostgreSQL
socket folder under /tmp, and PostgreSQL's data under /var/tmp when the postgres user cannot
reach the data folder, at paths anyone can compute. A symlink planted there by another user
must not make it hand the link's target to postgres (it did: `install -d -o postgres` follows
the link and chowns what it points to). It refuses, with a message, and changes nothing.

Real script, real postgres user; no server is started (the refusal comes first)."""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

LOCALSTACK = Path(__file__).resolve().parents[3] / "backend" / "scripts" / "localstack.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="localstack.sh runs as root")


def _digest(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:12]


@pytest.fixture
def scratch():
    """Folders made for one test under /var/tmp, removed afterwards (with anything an unfixed
    script may have started in them)."""
    made: list[Path] = []

    def make(mode: int) -> Path:
        path = Path(tempfile.mkdtemp(prefix="synspirit-test-", dir="/var/tmp"))
        path.chmod(mode)
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def _stop(datadir: Path) -> None:
    """Stop what an unfixed script started there (before the planted link goes: the cluster
    is reached through it)."""
    subprocess.run(["bash", str(LOCALSTACK), "stop", str(datadir)], capture_output=True,
                   timeout=120, check=False)


def _start(datadir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LOCALSTACK), "start", str(datadir), "--only", "pg",
                           "--fast"], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _plant(link: Path, target: Path):
    if link.is_symlink() or link.exists():
        pytest.skip(f"{link} exists already")
    link.symlink_to(target)
    return link


def test_a_symlink_at_the_socket_folder_is_refused(scratch):
    """A data folder whose path is too long for a unix socket gets its socket folder at
    /tmp/synspirit-pg-HASH; a link planted there is refused, its target keeps its owner."""
    victim = scratch(0o700)
    base = scratch(0o755)
    datadir = base / ("d" * 70)
    datadir.mkdir(mode=0o755)
    link = _plant(Path(f"/tmp/synspirit-pg-{_digest(str(datadir / 'pg'))}"), victim)
    try:
        done = _start(datadir)
        assert victim.stat().st_uid == 0, "the link's target was handed to postgres"
        assert done.returncode != 0, done.stderr
        assert "refusing" in done.stderr and str(link) in done.stderr, done.stderr
    finally:
        _stop(datadir)
        link.unlink()


def test_a_symlink_at_the_var_tmp_data_folder_is_refused(scratch):
    """A data folder the postgres user cannot reach gets its cluster under
    /var/tmp/synspirit-pg-HASH; a link planted there is refused, its target keeps its owner."""
    victim = scratch(0o700)
    closed = scratch(0o700)  # postgres cannot traverse it
    datadir = closed / "data"
    datadir.mkdir()
    link = _plant(Path(f"/var/tmp/synspirit-pg-{_digest(str(datadir))}"), victim)
    try:
        done = _start(datadir)
        assert victim.stat().st_uid == 0, "the link's target was handed to postgres"
        assert not (victim / "data").exists(), "the cluster was made in the link's target"
        assert done.returncode != 0, done.stderr
        assert "refusing" in done.stderr and str(link) in done.stderr, done.stderr
    finally:
        _stop(datadir)
        link.unlink()


@pytest.mark.parametrize("where", ["a folder postgres cannot reach", "a path too long for a socket"])
def test_the_private_folders_still_serve_their_purpose(scratch, where):
    """Without a planted link both paths still give a running PostgreSQL (the folders made
    by the script, owned by postgres, mode 0700), and a second start reuses them."""
    if where == "a folder postgres cannot reach":
        datadir = scratch(0o700) / "data"
        private = Path(f"/var/tmp/synspirit-pg-{_digest(str(datadir))}")
    else:
        datadir = scratch(0o755) / ("d" * 70)
        private = Path(f"/tmp/synspirit-pg-{_digest(str(datadir / 'pg'))}")
    datadir.mkdir(mode=0o755)
    try:
        for _ in range(2):
            done = _start(datadir)
            assert done.returncode == 0, done.stderr
            assert "export DATABASE_URL=" in done.stdout
            _stop(datadir)
        assert not private.is_symlink()
        assert (private.stat().st_uid, private.stat().st_mode & 0o777) == (
            pwd.getpwnam("postgres").pw_uid, 0o700)
    finally:
        _stop(datadir)
        shutil.rmtree(private, ignore_errors=True)
