"""No secret in the repository: the git-tracked files are scanned for what looks like one.

Rules (each finding names file, line and rule):
- private-key:   a PEM/OpenSSH/PGP private key block.
- url-password:  credentials in a URL (scheme://user:password@host) whose password is not a
                 placeholder (`$VAR`, `${VAR}`, `{{ var }}`, `<pass>`, `%s`, or a word such as
                 `pass`, `password`, `secret`, `changeme`, `example`, `xxx`).
- token-format:  well-known credential formats (AWS access key ids, GitHub, GitLab, Slack,
                 Stripe, Google API, PyPI and npm tokens).
- assignment:    a quoted literal assigned to a password/secret/token/api key name
                 (`password: "..."`, `SECRET_KEY='...'`, `requirepass ...`) outside tests/;
                 inside tests/ only when the literal looks random (16+ characters, letters and
                 digits, high entropy), because the tests register throwaway users with
                 readable passwords like "correct-horse" on a database they create and drop.
- secret-file:   a tracked file whose name says it holds a key or secret (id_rsa, *.pem,
                 *.key, *.p12, .env, the Ansible secrets directory).

What the rules deliberately let through, and why, is in ALLOWED (path, text, reason): keep it
short, and give a reason a reviewer can check. The real secrets (SECRET_KEY, the PostgreSQL and
Redis passwords) are generated on the Ansible controller into <inventory>/secrets/, which git
ignores: test_the_ansible_secrets_directory_is_ignored_by_git proves that.

test_the_scanner_finds_planted_secrets feeds the scanner one planted example per rule (built
from fragments, so this file itself holds none), so a rule that stops matching fails a test.
"""
from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PLACEHOLDER_WORDS = {"pass", "password", "passwd", "secret", "changeme", "change-me", "example",
                     "pw", "pwd", "redacted", "placeholder", "token", "xxx", "your-password"}

PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
URL_CREDENTIALS = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(?P<user>[^\s:/@'\"<>`]*):(?P<password>[^\s@/'\"`]+)@[^\s/'\"`]+")
TOKEN_FORMATS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})"),
    "GitLab token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[A-Za-z0-9]{20,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "PyPI token": re.compile(r"\bpypi-AgE[A-Za-z0-9_-]{50,}"),
    "npm token": re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
}
SECRET_NAME = r"[A-Za-z0-9_]*(?:password|passwd|secret|token|api_?key|private_?key|requirepass)" \
              r"[A-Za-z0-9_]*"
ASSIGNMENT = re.compile(
    r"(?i)(?P<name>\b" + SECRET_NAME + r")[\"']?\s*(?:[:=]|\s)\s*[\"'](?P<value>[^\"'\s]{6,})[\"']")
# Names that mention a secret without holding one.
HARMLESS_NAMES = re.compile(r"(?i)(_encryption|_hash|_file|_dir|_path|_length|_max_age|_prefix|"
                            r"_header|_type|_min|_max|_salt|_scheme)$")
SECRET_FILES = re.compile(r"(?:^|/)(?:id_(?:rsa|dsa|ecdsa|ed25519)|[^/]+\.(?:pem|key|p12|pfx|jks)"
                          r"|\.env(?:\..+)?|\.netrc|\.pgpass|credentials\.json)$"
                          r"|(?:^|/)ansible/inventories/[^/]+/secrets/")

# (path, text that matched, reason): exact path and text prefix, anything new is reported.
# Empty today: the documented URLs use placeholder credentials (user:pass@host, $PG_PASSWORD),
# which the rules already let through.
ALLOWED: list[tuple[str, str, str]] = [
    ("backend/app/web/site/static/app.js", 'password" : "current-password"',
     "the HTML autocomplete tokens of the sign-up and sign-in password fields, not a password"),
]


def _placeholder(value: str) -> bool:
    v = value.strip().lower()
    return (v in PLACEHOLDER_WORDS or v.startswith(("$", "{", "<", "%", "*"))
            or set(v) <= set("x*.") or "{{" in v or "${" in v)


def _random_looking(value: str) -> bool:
    if len(value) < 16 or not re.search(r"[A-Za-z]", value) or not re.search(r"\d", value):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5


def scan_text(path: str, text: str) -> list[tuple[str, int, str, str]]:
    """Findings (path, line, rule, matched text) in one file's text."""
    found = []

    def add(rule: str, match: re.Match) -> None:
        line = text.count("\n", 0, match.start()) + 1
        found.append((path, line, rule, match.group(0)))

    for m in PRIVATE_KEY.finditer(text):
        add("private-key", m)
    for m in URL_CREDENTIALS.finditer(text):
        if not _placeholder(m.group("password")):
            add("url-password", m)
    for name, rx in TOKEN_FORMATS.items():
        for m in rx.finditer(text):
            add(f"token-format ({name})", m)
    in_tests = path.startswith("tests/")
    for m in ASSIGNMENT.finditer(text):
        name, value = m.group("name"), m.group("value")
        if HARMLESS_NAMES.search(name) or _placeholder(value):
            continue
        if in_tests and not _random_looking(value):
            continue
        add("assignment", m)
    return found


def scan_repository() -> list[tuple[str, int, str, str]]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    findings = []
    for path in filter(None, listed):
        if SECRET_FILES.search(path):
            findings.append((path, 0, "secret-file", path))
        file = ROOT / path
        if not file.is_file() or file.is_symlink():
            continue
        data = file.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        findings += scan_text(path, data.decode("utf-8", errors="replace"))
    return findings


def _allowed(finding) -> bool:
    path, _, _, matched = finding
    return any(path == p and matched.startswith(t) for p, t, _ in ALLOWED)


def test_no_secret_in_the_tracked_files():
    findings = [f for f in scan_repository() if not _allowed(f)]
    assert findings == [], "things that look like secrets (path, line, rule, text):\n" + \
        "\n".join(f"  {p}:{n}: {rule}: {text[:100]}" for p, n, rule, text in findings)


def test_every_allowance_is_still_needed():
    """An allowance that no longer matches anything is removed, so the list stays short."""
    findings = scan_repository()
    stale = [(p, t) for p, t, _ in ALLOWED
             if not any(f[0] == p and f[3].startswith(t) for f in findings)]
    assert stale == []


def test_the_ansible_secrets_directory_is_ignored_by_git():
    """The generated SECRET_KEY and passwords land in <inventory>/secrets/: never committed."""
    inventories = sorted(p for p in (ROOT / "ansible" / "inventories").iterdir() if p.is_dir())
    assert inventories
    for inventory in inventories:
        probe = (inventory / "secrets" / "secret_key.txt").relative_to(ROOT)
        done = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(probe)], cwd=ROOT,
                              check=False)
        assert done.returncode == 0, f"{probe} is not ignored by git"


def _planted() -> list[tuple[str, str, str]]:
    """(path, text, rule that must fire), assembled from fragments at run time."""
    dash = "-" * 5
    key = f"{dash}BEGIN OPENSSH PRIVATE KEY{dash}\nb3BlbnNzaC1rZXk\n{dash}END OPENSSH PRIVATE KEY{dash}"
    return [
        ("deploy/key.txt", key, "private-key"),
        ("deploy/rsa.txt", key.replace("OPENSSH", "RSA"), "private-key"),
        ("app/settings.py", "DB = 'postgresql://synspirit:" + "Zq8xWv3LrT9p" + "@db1/synspirit'",
         "url-password"),
        ("app/redis.conf", "url: redis://:" + "hunter2hunter2" + "@10.0.0.5:6379/0", "url-password"),
        ("ci.yml", "aws_id: " + "AKIA" + "Q3EGRZ7NW2XKPL4M", "token-format"),
        ("ci.yml", "gh: " + "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "token-format"),
        ("systemd/x.env", "SECRET_KEY=" + "'s3cr3t-value-for-prod'", "assignment"),
        ("ansible/vars.yml", "synspirit_redis_password: " + '"Tr0ub4dor"', "assignment"),
        ("tests/backend/x.py", "token = " + '"' + "Xk9mP2qR7vL4nW8sT3yB6cF1" + '"', "assignment"),
    ]


@pytest.mark.parametrize("path, text, rule", _planted(), ids=[p[2] + ":" + p[0] for p in _planted()])
def test_the_scanner_finds_planted_secrets(path, text, rule):
    assert any(f[2].startswith(rule) for f in scan_text(path, text)), (rule, text)


@pytest.mark.parametrize("path, text", [
    ("README.md", "DATABASE_URL=postgresql+psycopg2://$PG_DB:$PG_PASSWORD@127.0.0.1:5432/db"),
    ("docs/x.md", "redis://:{{ synspirit_redis_password }}@data1:6379/0"),
    ("docs/x.md", 'curl -d \'{"username": "alice", "password": "<password>"}\''),
    ("tests/backend/x.py", 'api.register(password="correct-horse")'),
    ("ansible/x.yml", "password_encryption = 'scram-sha-256'"),
    ("docs/x.md", "Authorization: Bearer <token>"),
], ids=["shell variables", "jinja", "angle placeholder", "readable test password",
        "setting named password_*", "doc placeholder"])
def test_the_scanner_lets_placeholders_through(path, text):
    assert scan_text(path, text) == []
