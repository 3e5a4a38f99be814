"""The committed seed corpus is what ``seeds.py`` makes, and every seed passes its harness: the fast suite
replays each one in-process, the fuzzers' regressions included."""
from __future__ import annotations

import importlib

import pytest

from tests.fuzz import HARNESSES, seeds


def test_every_harness_has_seeds():
    assert set(seeds.seeds()) == set(HARNESSES)


@pytest.mark.parametrize("harness", HARNESSES)
def test_the_committed_corpus_is_what_the_seed_script_makes(harness):
    committed = {path.name: path.read_bytes() for path in (seeds.CORPUS / harness).iterdir()}
    assert committed == seeds.seeds()[harness], "run `python -m tests.fuzz.seeds` and commit tests/fuzz/corpus/"


@pytest.mark.parametrize("harness", HARNESSES)
def test_every_seed_passes_its_harness(harness):
    test_one_input = importlib.import_module(f"tests.fuzz.fuzz_{harness}").test_one_input
    for path in sorted((seeds.CORPUS / harness).iterdir()):
        test_one_input(path.read_bytes())
