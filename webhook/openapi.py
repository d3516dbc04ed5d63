"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of the whole HTTP API.

The document is webhook/openapi.yaml (package data), read once per process: it depends
on no setting. tests/test_openapi.py holds it to the app: every route documented and
nothing more, the limits it states equal to the code's, and schemathesis' requests
answered as documented. Unauthenticated, like /healthz: it names the variables that
configure credentials and never holds a value, so it tells nothing the source does not.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

blueprint = Blueprint("openapi", __name__)
PATH = "/api/v1/openapi.json"


@blueprint.get(PATH)
def openapi() -> Response:
    return jsonify(document())


@functools.cache
def document() -> dict[str, Any]:
    """The document as data. Callers must not change it: it is shared."""
    text = resources.files("webhook").joinpath("openapi.yaml").read_text(encoding="utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc
