"""The programs that run outside the server — the host agent on every session host, the connector on
users' machines — are copied there with ``wire/`` and nothing else of ours, and need no Django.

Each program's modules are imported in a fresh interpreter, and everything they loaded is listed: that
includes what a package's ``__init__`` imports, which import-linter's contracts do not see.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"wire", "core", "broker", "feed", "hostagent", "gateway", "portal", "wvdportal", "testbed", "bench", "tests"}
# What the programs may need besides the standard library (their READMEs say so).
THIRD_PARTY = {"websockets", "cryptography", "cffi", "_cffi_backend"}

PROGRAMS = ("hostagent.agent", "gateway.connector")


def allowed(name: str, program: str) -> bool:
    """``wire``, the program's own package and its parent package's ``__init__``."""
    return (name == "wire" or name.startswith("wire.") or name == program.split(".")[0]
            or name == program or name.startswith(program + "."))


def loaded_by(package: str) -> list[str]:
    modules = sorted(f"{package}.{path.stem}" if path.stem != "__init__" else package
                     for path in (ROOT / package.replace(".", "/")).glob("*.py"))
    probe = (f"import importlib, json, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
             "print(json.dumps(sorted(sys.modules)))")
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_program_loads_nothing_of_ours_but_wire_and_itself(program):
    strays = [name for name in loaded_by(program) if name.split(".")[0] in OURS and not allowed(name, program)]
    assert strays == [], f"{program} loads {strays}"


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_program_needs_only_the_standard_library_websockets_and_cryptography(program):
    top_level = {name.split(".")[0] for name in loaded_by(program)} - OURS
    extra = sorted(name for name in top_level - THIRD_PARTY
                   if name not in sys.stdlib_module_names and not name.startswith("_"))
    assert extra == [], f"{program} needs {extra}"
