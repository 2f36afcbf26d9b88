"""Call a node's operator API and check each answer against ``openapi.json``.

``operator(runtime, method, path, body)`` sends one request with the operator token and
asserts that the answer's status is documented for that operation and its body fits the
documented schema; it returns the status and the body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cpms.runtime import Runtime

from support import ADMIN_TOKEN

__all__ = ["OPENAPI", "operator"]

OPENAPI: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "ocpi_api" / "operator" / "openapi.json").read_text()
)


def _template(path: str) -> str:
    """The documented path template ``path`` (below /api, query left out) is an instance of."""
    parts = path.split("?")[0].split("/")
    return next(
        template
        for template in OPENAPI["paths"]
        if len(template.split("/")) == len(parts)
        and all(
            a == b or a.startswith("{") for a, b in zip(template.split("/"), parts, strict=True)
        )
    )


async def operator(runtime: Runtime, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the operator API; check the answer against openapi.json; return status, body."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{runtime.base_url()}/api{path}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response,
    ):
        answer = await response.json()
        status = response.status
    documented = OPENAPI["paths"][_template(path)][method.lower()]["responses"][str(status)]
    if "$ref" in documented:
        documented = OPENAPI["components"]["responses"][documented["$ref"].rsplit("/", 1)[-1]]
    registry: Registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
    )
    schema = documented["content"]["application/json"]["schema"]
    validator = Draft202012Validator(
        {"$ref": "urn:openapi#" + schema["$ref"][1:]} if "$ref" in schema else schema,
        registry=registry,
    )
    assert [e.message for e in validator.iter_errors(answer)] == [], (status, answer)
    return status, answer
