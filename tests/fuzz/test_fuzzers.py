"""Each harness under atheris/libFuzzer for a few seconds, from the committed seeds (``make test`` runs this).

A bounded run per harness in a subprocess: a scratch copy of its corpus (libFuzzer adds the inputs it
finds to the first corpus directory; the repository's stays as committed), crashes written under the
test's tmp dir, memory and per-input time capped. CI runs these once per run, on the embedded shape
(``.ci/run`` sets ``WVD_TEST_SKIP=fuzzers`` for the PostgreSQL one). Longer runs by hand:
``tests/fuzz/__main__.py`` says how, as does README.md under `make test`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import HARNESSES
from tests.fuzz.seeds import CORPUS

REPO_ROOT = Path(__file__).resolve().parents[2]
DICTIONARIES = Path(__file__).resolve().parent / "dicts"
SECONDS = 12  # per harness: five harnesses make about a minute
MIN_RUNS = 1000  # a run that managed fewer inputs than this did not really fuzz

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("fuzzers" in os.environ.get("WVD_TEST_SKIP", "").split(","),
                       reason="WVD_TEST_SKIP=fuzzers: CI runs the fuzzers once, on the other shape"),
]


@pytest.mark.parametrize("harness", HARNESSES)
def test_the_fuzzer_finds_nothing_in_a_short_run(harness, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS / harness, corpus)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    command = [sys.executable, "-m", "tests.fuzz", harness, f"-max_total_time={SECONDS}", "-rss_limit_mb=1024",
               "-timeout=10", f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(corpus)]
    dictionary = DICTIONARIES / f"{harness}.dict"
    if dictionary.exists():
        command.insert(-1, f"-dict={dictionary}")
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, errors="replace",
                         timeout=SECONDS + 120)
    output = run.stdout + run.stderr
    crashes = sorted(path.name for path in artifacts.iterdir())
    assert run.returncode == 0 and not crashes, (
        f"fuzz_{harness} failed (exit {run.returncode}); inputs kept in {artifacts}: {crashes}\n"
        f"replay one with: python -m tests.fuzz {harness} {artifacts}/<file>\n{output[-6000:]}"
    )
    done = re.search(r"Done (\d+) runs in", output)
    assert done and int(done.group(1)) >= MIN_RUNS, output[-3000:]
