"""Which Celery pool this process runs, read from its command line (imports nothing, so that
celery_utils can ask before gevent patches the standard library)."""
from __future__ import annotations


def pool_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("-P", "--pool") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg.startswith("-P") and len(arg) > 2:
            return arg[2:]
    return None
