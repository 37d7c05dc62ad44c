"""The lab that tests/lab/lab.sh builds (LAB_ID=N: lab N): where its inventory and state are,
how to reach its hosts over SSH, and its inventory as Ansible reads it."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_ID = os.environ.get("LAB_ID") or "0"
_SUFFIX = "" if LAB_ID == "0" else LAB_ID
# Written by `lab.sh up`; `lab.sh test` also passes them as LAB_INVENTORY / LAB_SSH_KEY.
INVENTORY = Path(os.environ.get("LAB_INVENTORY")
                 or REPO / f"ansible/inventories/lab{_SUFFIX}/hosts.ini")
SSH_KEY = Path(os.environ.get("LAB_SSH_KEY") or REPO / ".cache/lab/ssh/id_ed25519")
STATE = REPO / ".cache/lab" / (f"lab{LAB_ID}" if _SUFFIX else "")  # timings.json, run/, hosts/


def ssh_options(connect_timeout: int | None = None) -> list[str]:
    """ssh options for a lab host: the lab's key, never a prompt, and no known_hosts (the hosts
    are rebuilt with new host keys)."""
    timeout = ["-o", f"ConnectTimeout={connect_timeout}"] if connect_timeout else []
    return ["-i", str(SSH_KEY), "-o", "BatchMode=yes", *timeout,
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR"]


def ssh_extra_args() -> str:
    """ssh_options() but the key, as one string (testinfra's ssh_extra_args)."""
    return shlex.join(ssh_options()[2:])


def read_inventory(path: Path = INVENTORY) -> dict:
    """The inventory as Ansible sees it (`ansible-inventory --list`):
    {"groups": {group: [every host in it or in its children]}, "addresses": {host: ip},
    "hostvars": {host: the inventory's variables of it}}."""
    tool = Path(sys.executable).with_name("ansible-inventory")
    out = subprocess.run([str(tool) if tool.exists() else "ansible-inventory", "-i", str(path),
                          "--list"], check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    hostvars = data.pop("_meta", {}).get("hostvars", {})

    def members(group: str) -> set[str]:
        entry = data.get(group, {})
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            found |= members(child)
        return found

    return {"groups": {group: sorted(members(group)) for group in data},
            "addresses": {h: v["ansible_host"] for h, v in hostvars.items() if "ansible_host" in v},
            "hostvars": hostvars}


def worker_hosts(inventory: dict) -> list[str]:
    """The hosts that run the Celery workers (ansible/group_vars/all/deployment.yml): the `worker`
    group, and every web host whose synspirit_run_workers (true unless the inventory sets it) is
    not false."""
    def true(value) -> bool:
        return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "yes", "1")

    groups, hostvars = inventory["groups"], inventory.get("hostvars", {})
    keep = [h for h in groups.get("web", [])
            if true(hostvars.get(h, {}).get("synspirit_run_workers", True))]
    return sorted(set(groups.get("worker", [])) | set(keep))
