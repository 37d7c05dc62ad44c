"""The OpenAPI document, served at /api/openapi.json."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)
_SPEC = Path(__file__).with_name("openapi.json")


@bp.get("/api/openapi.json")
def openapi():
    return Response(_SPEC.read_text(), mimetype="application/json")
