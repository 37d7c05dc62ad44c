"""The OpenAPI document (backend/app/openapi.json): valid OpenAPI 3.0.3, served as is, and in
step with the code: the same routes and methods as the Flask app, and the same limits as the
request models in app/validation.py.

No service is needed: the app is built in a child process (create_app() binds global
extensions such as Socket.IO and Celery, which must not leak into other tests of the session),
with addresses that nothing listens on; nothing connects while the routes are listed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[3]
BACKEND = ROOT / "backend"
SPEC_PATH = BACKEND / "app" / "openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Flask adds these to every rule by itself; the document describes the methods of the views.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
# Request models and the component schemas that document them.
MODELS = {
    "Credentials": "RegisterRequest",
    "LoginBody": "LoginRequest",
    "PasswordChange": "PasswordChangeRequest",
    "ContentCreate": "ContentCreate",
    "ContentUpdate": "ContentUpdate",
    "CommentCreate": "CommentCreate",
    "ActionBody": "ActionRequest",
    "NotificationsRead": "NotificationsReadRequest",
}
BOUNDS = ("minLength", "maxLength", "minimum", "maximum")

# Runs in the child: the app's url rules, the served document and the models' JSON schemas.
PROBE = f"""
import json
from app import create_app
from app import validation

app = create_app()
rules = [
    {{"rule": r.rule, "endpoint": r.endpoint, "methods": sorted(r.methods or ())}}
    for r in app.url_map.iter_rules()
]
served = app.test_client().get("/api/openapi.json")
models = {{name: getattr(validation, name).model_json_schema() for name in {sorted(MODELS)!r}}}
models["ListQuery"] = validation.ListQuery.model_json_schema()
print(json.dumps({{"rules": rules, "served_status": served.status_code,
                  "served_type": served.mimetype, "served": served.get_json(silent=True),
                  "models": models}}))
"""


def _probe() -> dict:
    env = dict(os.environ)
    env.update(
        SECRET_KEY="openapi-test-secret",
        SYNSPIRIT_ENV="production",
        DATABASE_URL="postgresql+psycopg2://x@127.0.0.1:1/x",
        REDIS_URL="redis://127.0.0.1:1/0",
        TRUSTED_PROXY_COUNT="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(BACKEND), env.get("PYTHONPATH")) if p),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BACKEND, env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )
    assert done.returncode == 0, f"create_app() probe failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def openapi_spec() -> dict:
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="module")
def app_probe() -> dict:
    return _probe()


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _flask_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[a-z_]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", rule)


def test_document_is_valid_openapi_3_0_3(openapi_spec):
    assert openapi_spec["openapi"] == "3.0.3"
    validate(openapi_spec)  # raises on any error, unresolvable $ref included


def test_document_is_indented_json_with_a_final_newline():
    text = SPEC_PATH.read_text()
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_the_served_document_is_the_file(app_probe, openapi_spec):
    assert app_probe["served_status"] == 200
    assert app_probe["served_type"] == "application/json"
    assert app_probe["served"] == openapi_spec


def test_every_route_is_documented_with_its_methods_and_nothing_else(app_probe, openapi_spec):
    in_app: dict[str, set[str]] = {}
    for rule in app_probe["rules"]:
        # Not the API: Socket.IO, and the web page's paths and files (app/web/, HTML).
        if (rule["endpoint"] == "static" or rule["endpoint"].startswith("web.")
                or rule["rule"].startswith("/socket.io")):
            continue
        methods = set(rule["methods"]) - IMPLICIT_METHODS
        in_app.setdefault(_flask_to_openapi(rule["rule"]), set()).update(methods)
    in_spec: dict[str, set[str]] = {}
    for path, method, _ in _operations(openapi_spec):
        in_spec.setdefault(path, set()).add(method.upper())
    assert in_app, "the app has no routes?"
    missing = {p: sorted(m - in_spec.get(p, set())) for p, m in in_app.items()
               if m - in_spec.get(p, set())}
    extra = {p: sorted(m - in_app.get(p, set())) for p, m in in_spec.items()
             if m - in_app.get(p, set())}
    assert not missing, f"routes missing from openapi.json: {missing}"
    assert not extra, f"documented but not served: {extra}"


def test_path_parameters_match_the_templates(openapi_spec):
    for path, item in openapi_spec["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        declared = {_resolve(openapi_spec, p)["name"] for p in item.get("parameters", [])
                    if _resolve(openapi_spec, p)["in"] == "path"}
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            own = {_resolve(openapi_spec, p)["name"] for p in op.get("parameters", [])
                   if _resolve(openapi_spec, p)["in"] == "path"}
            assert declared | own == names, f"{method.upper()} {path}"


def test_operation_ids_are_unique(openapi_spec):
    ids = [op["operationId"] for _, _, op in _operations(openapi_spec)]
    assert len(ids) == len(set(ids))


def test_error_responses_use_the_error_schema(openapi_spec):
    error = "#/components/schemas/Error"
    for path, method, op in _operations(openapi_spec):
        if path == "/readyz":
            continue  # its 503 is the readiness report, which carries an `error` object too
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            schema = _resolve(openapi_spec, response)["content"]["application/json"]["schema"]
            assert schema == {"$ref": error}, f"{method.upper()} {path} {status}"


def test_the_usual_failures_are_documented(openapi_spec):
    for path, method, op in _operations(openapi_spec):
        codes = set(op["responses"])
        where = f"{method.upper()} {path}"
        if op.get("security"):
            assert "401" in codes, where
            assert "503" in codes, where  # the bearer token is checked against the database
        if "requestBody" in op:
            assert {"400", "413", "422", "503"} <= codes, where
        if "{" in path:
            assert "404" in codes, where
        if method == "delete" and "requestBody" not in op:
            assert "204" in codes, where
        if path.startswith("/api/") and path != "/api/openapi.json":
            assert "503" in codes, where  # every API route reads PostgreSQL or Redis
        if method != "get" and path.startswith(("/api/posts", "/api/articles", "/api/actions")):
            assert "429" in codes, where  # WRITE_RATE_LIMIT
    paths = openapi_spec["paths"]
    assert {"401", "429"} <= set(paths["/api/auth/login"]["post"]["responses"])
    assert {"403", "429"} <= set(paths["/api/auth/password"]["post"]["responses"])
    assert "429" in paths["/api/auth/register"]["post"]["responses"]


def _plain(prop: dict) -> dict:
    """A pydantic property schema without its `X | None` wrapper."""
    if "anyOf" in prop:
        (prop,) = [p for p in prop["anyOf"] if p.get("type") != "null"]
    return prop


def test_request_limits_match_the_validation_models(app_probe, openapi_spec):
    schemas = openapi_spec["components"]["schemas"]
    for model_name, schema_name in MODELS.items():
        model = app_probe["models"][model_name]
        documented = schemas[schema_name]
        assert set(documented["properties"]) == set(model["properties"]), schema_name
        assert set(documented.get("required", [])) == set(model.get("required", [])), schema_name
        for name, prop in model["properties"].items():
            prop, doc = _plain(prop), documented["properties"][name]
            where = f"{schema_name}.{name}"
            for bound in BOUNDS:
                assert doc.get(bound) == prop.get(bound), f"{where} {bound}"
            enum = prop.get("enum") or ([prop["const"]] if "const" in prop else None)
            if enum is not None:
                assert doc["enum"] == enum, where
            if "pattern" in prop:
                # Same characters; the document's version also refuses a trailing newline.
                assert doc["pattern"].startswith(prop["pattern"]), where
    undo = schemas["UndoActionRequest"]["properties"]
    assert undo["action"]["enum"] == ["like", "collect"]


def test_query_parameters_match_the_list_model(app_probe, openapi_spec):
    model = app_probe["models"]["ListQuery"]["properties"]
    params = {p["name"]: p["schema"] for p in openapi_spec["components"]["parameters"].values()
              if p["in"] == "query"}
    assert set(params) == set(model)
    for name, prop in model.items():
        default = prop.get("default")
        prop = _plain(prop)  # cursor: str | None
        for key in (*BOUNDS, "enum"):
            assert params[name].get(key) == prop.get(key), f"{name} {key}"
        assert params[name].get("default") == default, f"{name} default"
