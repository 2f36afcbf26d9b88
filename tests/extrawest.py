"""Check OCPI bodies with a second independent model set: extrawest-ocpi (``py_ocpi``).

extrawest-ocpi pins old pydantic (1.10) and FastAPI, so it can never live in the product's
environment. ``extrawest_checker()`` builds a separate virtualenv for it once
(``.venv-extrawest`` beside the repository's ``.venv``) and returns a checker that validates
a batch of bodies in one subprocess; it returns ``None`` (the caller skips, saying why)
where the package cannot be installed, e.g. on a machine without a package index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ExtrawestChecker", "extrawest_checker"]

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-extrawest"
PACKAGE = "extrawest-ocpi==2025.7.16"

#: Our model names (as ocpi-types spells them) -> py_ocpi module and class.
MODELS = {
    "Location": ("locations", "Location"),
    "Evse": ("locations", "EVSE"),
    "Connector": ("locations", "Connector"),
    "Session": ("sessions", "Session"),
    "ChargingPreferences": ("sessions", "ChargingPreferences"),
    "Cdr": ("cdrs", "Cdr"),
    "ChargingPeriod": ("cdrs", "ChargingPeriod"),
    "Tariff": ("tariffs", "Tariff"),
    "Token": ("tokens", "Token"),
    "AuthorizationInfo": ("tokens", "AuthorizationInfo"),
    "LocationReferences": ("tokens", "LocationReference"),
    "Credentials": ("credentials", "Credentials"),
    "CommandResponse": ("commands", "CommandResponse"),
    "CommandResult": ("commands", "CommandResult"),
    "ChargingProfileResponse": ("chargingprofiles", "ChargingProfileResponse"),
    "ActiveChargingProfileResult": ("chargingprofiles", "ActiveChargingProfileResult"),
    "ChargingProfileResult": ("chargingprofiles", "ChargingProfileResult"),
    "ClearProfileResult": ("chargingprofiles", "ClearProfileResult"),
    "VersionDetails": ("versions", "VersionDetail"),
}

_SCRIPT = """
import importlib, json, sys
problems = []
for line in sys.stdin:
    module, name, body = json.loads(line)
    schemas = importlib.import_module(f"py_ocpi.modules.{module}.v_2_2_1.schemas")
    try:
        getattr(schemas, name).parse_obj(body)
    except Exception as error:
        problems.append(f"{name}: {error}")
print(json.dumps(problems))
"""


class ExtrawestChecker:
    """Validates bodies with py_ocpi in its own interpreter."""

    def __init__(self, python: Path) -> None:
        self.python = python

    def problems(self, bodies: list[tuple[str, Any]]) -> list[str]:
        """Return what py_ocpi rejects among ``(model name, body)`` pairs (empty: all valid)."""
        lines = "".join(json.dumps([*MODELS[name], body]) + "\n" for name, body in bodies)
        done = subprocess.run(
            [str(self.python), "-c", _SCRIPT],
            input=lines,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"py_ocpi checker failed: {done.stderr[-2000:]}")
        return list(json.loads(done.stdout))


@cache
def extrawest_checker() -> ExtrawestChecker | None:
    """Return a checker, building its virtualenv on first use; None if that cannot be done."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import py_ocpi.modules.cdrs.v_2_2_1.schemas"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return ExtrawestChecker(python)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PACKAGE],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return None
    return ExtrawestChecker(python)
