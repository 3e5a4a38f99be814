"""Run one harness under atheris/libFuzzer: ``python -m tests.fuzz <harness> [libFuzzer flags] [corpus dirs]``.

For example, half an hour on the MS-TSGU parsers, growing a scratch copy of the seed corpus::

    cp -r tests/fuzz/corpus/rdg /tmp/rdg-corpus
    .venv/bin/python -m tests.fuzz rdg -max_total_time=1800 -dict=tests/fuzz/dicts/rdg.dict /tmp/rdg-corpus

libFuzzer writes new inputs into the first corpus directory and a crashing input to ``crash-<sha1>`` in
the working directory (``-artifact_prefix=dir/`` moves it); replay one with
``python -m tests.fuzz rdg crash-<sha1>``.
"""
from __future__ import annotations

import importlib
import logging
import sys

import atheris

from tests.fuzz import HARNESSES

# Our byte-level modules and the WebSocket framing library under gateway/wsframing.py get coverage
# feedback; the rest of the interpreter runs uninstrumented.
INSTRUMENTED = ["gateway", "wire", "websockets"]


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in HARNESSES:
        sys.exit(f"usage: python -m tests.fuzz {{{'|'.join(HARNESSES)}}} [libFuzzer flags] [corpus dirs]")
    name = argv[1]
    # The session logs every refusal; millions of them would only slow the run down.
    logging.disable(logging.CRITICAL)
    with atheris.instrument_imports(include=INSTRUMENTED):
        harness = importlib.import_module(f"tests.fuzz.fuzz_{name}")
    atheris.Setup([argv[0], *argv[2:]], harness.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
