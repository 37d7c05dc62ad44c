"""No deployment secret on a command line. Ansible puts a task's `environment:` and a command's
arguments on the command line it runs (under sudo, which logs it to the auth log and the
journal, kept a month; any local user sees it in ps meanwhile); `no_log` hides only Ansible's own
output. Secrets reach processes through files: the env files the units and the migrations read
(EnvironmentFile=), /etc/default/* for the backup commands, module arguments (sent as a file).

The secret variables are those of ansible/group_vars/all/secrets.yml and every variable whose
definition uses one (found transitively in group_vars, role defaults and vars, and what the
playbooks hand the roles); no task or play may name one in `environment:`, or in the arguments
of command, shell, raw or script. Give a password on stdin instead (`redis-cli --askpass` with
the module's `stdin:`: module arguments travel as a file), and mark that task `no_log: true`:
a module logs its arguments, stdin too, to the host's journal unless the task is no_log."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ANSIBLE = Path(__file__).resolve().parents[3] / "ansible"
SECRETS_FILE = ANSIBLE / "group_vars" / "all" / "secrets.yml"
COMMANDS = {"command", "shell", "raw", "script"}
NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def _yaml_files():
    return sorted(p for p in ANSIBLE.rglob("*.yml")
                  if "inventories" not in p.parts or p.parts[-2] == "group_vars")


def _load(path: Path):
    try:
        return list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError:
        return []


def _playbook_vars(doc) -> dict:
    """The variables a playbook binds: plays' vars, and roles' vars and parameters."""
    found = {}
    for play in doc if isinstance(doc, list) else []:
        if not isinstance(play, dict):
            continue
        found.update(play.get("vars") or {})
        for role in play.get("roles") or []:
            if isinstance(role, dict):
                found.update(role.get("vars") or {})
                found.update({k: v for k, v in role.items()
                              if k not in ("role", "name", "tags", "when", "vars")})
    return found


def _definitions() -> dict[str, str]:
    """Every variable of group_vars, role defaults and vars, and the playbooks: name -> text."""
    found: dict[str, str] = {}
    for path in _yaml_files():
        in_vars_file = bool({"defaults", "vars", "group_vars"} & set(path.parts))
        for doc in _load(path):
            if in_vars_file and isinstance(doc, dict):
                found.update({k: yaml.safe_dump(v) for k, v in doc.items()})
            elif path.parent == ANSIBLE:
                found.update({k: yaml.safe_dump(v) for k, v in _playbook_vars(doc).items()})
    return found


def _secrets() -> set[str]:
    """The deployment's secrets: every variable of group_vars/all/secrets.yml but the folder."""
    return {name for name in yaml.safe_load(SECRETS_FILE.read_text())
            if name != "synspirit_secrets_dir"}


def secret_variables() -> set[str]:
    definitions = _definitions()
    secret = _secrets()
    while True:
        more = {name for name, text in definitions.items()
                if name not in secret and set(NAME.findall(text)) & secret}
        if not more:
            return secret
        secret |= more


def _nodes(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def exposures(path: Path, secret: set[str], root: Path = ANSIBLE) -> list[str]:
    """Where a task or play of the file hands a secret variable to a command line."""
    found, shown = [], path.relative_to(root)
    for doc in _load(path):
        for node in _nodes(doc):
            where = node.get("name", "?")
            if "environment" in node and set(NAME.findall(yaml.safe_dump(node["environment"]))) \
                    & secret:
                found.append(f"{shown}: {where}: environment")
            for key, args in node.items():
                if key.rsplit(".", 1)[-1] not in COMMANDS:
                    continue
                stdin = args.get("stdin") if isinstance(args, dict) else None
                line = {k: v for k, v in args.items() if k != "stdin"} \
                    if isinstance(args, dict) else args
                if set(NAME.findall(yaml.safe_dump(line))) & secret:
                    found.append(f"{shown}: {where}: {key}")
                if set(NAME.findall(yaml.safe_dump(stdin))) & secret and \
                        node.get("no_log") is not True:
                    found.append(f"{shown}: {where}: stdin without no_log")
    return found


def test_the_secret_variables_are_found():
    """Control: the derived variables are seen, so an exposure through one would be too."""
    secret = secret_variables()
    assert {"synspirit_secret_key", "synspirit_redis_password", "__synspirit_environment",
            "postgresql_app_password", "redis_password"} <= secret
    assert "synspirit_secrets_dir" not in secret


def test_no_task_puts_a_secret_on_a_command_line():
    secret = secret_variables()
    found = [e for path in _yaml_files() for e in exposures(path, secret)]
    assert found == [], "secrets on a command line (use a file the process reads):\n" + \
        "\n".join(found)


def test_the_check_finds_a_planted_exposure(tmp_path):
    planted = tmp_path / "task.yml"
    planted.write_text(yaml.safe_dump([
        {"name": "Migrate", "ansible.builtin.command": {"argv": ["flask", "db", "upgrade"]},
         "environment": "{{ __synspirit_environment }}"},
        {"name": "Ping", "ansible.builtin.shell": "redis-cli -a {{ synspirit_redis_password }}"},
        {"name": "Role", "ansible.builtin.command": {"argv": ["redis-cli", "--askpass", "ROLE"],
                                                     "stdin": "{{ redis_password }}"}},
        {"name": "Quiet", "ansible.builtin.command": {"argv": ["redis-cli", "--askpass", "ROLE"],
                                                      "stdin": "{{ redis_password }}"},
         "no_log": True},
    ]))
    assert exposures(planted, secret_variables(), root=tmp_path) == [
        "task.yml: Migrate: environment", "task.yml: Ping: ansible.builtin.shell",
        "task.yml: Role: stdin without no_log"]
