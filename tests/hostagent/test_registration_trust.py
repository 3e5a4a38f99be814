"""How `register` is told which CA to trust: the fingerprint forms it accepts and the ones it refuses."""
from __future__ import annotations

import pytest

from hostagent.agent.__main__ import main
from hostagent.agent.registration import RegistrationFailed, parse_fingerprint, register

HEX = "be4b57712582a9e9680b5111befefbf4214f4798bf8398a924513ebfcba18af4"


@pytest.mark.parametrize("value", [HEX, HEX.upper(), ":".join(HEX[i:i + 2] for i in range(0, 64, 2)),
                                   f"sha256:{HEX}", f"  {HEX}\n"])
def test_a_fingerprint_is_read_with_or_without_colons_in_either_case(value):
    assert parse_fingerprint(value) == HEX


@pytest.mark.parametrize("value", ["", HEX[:-2], HEX + "00", "zz" * 32, "md5:" + HEX])
def test_anything_else_is_not_a_fingerprint(value):
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        parse_fingerprint(value)


def test_a_bad_fingerprint_is_refused_before_anything_is_fetched(tmp_path):
    with pytest.raises(RegistrationFailed, match="not a SHA-256 fingerprint") as refused:
        register("https://127.0.0.1:9", "t", "h", tmp_path / "state", ca_fingerprint="abc")
    assert refused.value.exit_code == 2


def test_a_fingerprint_pins_an_https_server_only(tmp_path):
    with pytest.raises(RegistrationFailed, match="https://"):
        register("http://127.0.0.1:9", "t", "h", tmp_path / "state", ca_fingerprint=HEX)


def test_ca_file_and_fingerprint_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["register", "--server", "https://127.0.0.1:9", "--token", "t", "--ca-file", "ca.pem",
              "--ca-fingerprint", HEX, "--state-dir", str(tmp_path)])
    assert usage.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
