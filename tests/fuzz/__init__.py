"""Coverage-guided fuzzing (atheris) of the parsers that read bytes from outside, one harness per family.

Each ``fuzz_*.py`` module holds a ``test_one_input(data: bytes)`` that feeds the bytes to its parsers and
asserts their contract: the value, or the parser's own documented error, never another exception, and
output bounded by the input. The modules import no atheris, so the fast suite replays the committed seed
corpus (``corpus/<harness>/``, written by ``seeds.py``) through them in-process (``test_corpus.py``);
``python -m tests.fuzz <harness>`` runs one under libFuzzer (``__main__.py``), and ``test_fuzzers.py``
does that for each harness for a few seconds, once per CI run.
"""

HARNESSES = ("rdg", "gateway_http", "relaylink", "hostchannel", "rdcleanpath")
