"""`assistflow up -p NAME=VALUE` overrides template parameters; a bad one is a one-line error."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from local import cli

TEMPLATE = Path(__file__).resolve().parents[1] / "fixtures" / "host" / "invoke.yml"


def test_parameters_are_name_value_pairs() -> None:
    args = cli.build_parser().parse_args(
        ["up", "-p", "MaintenanceSchedule=@every 30s", "--parameter", "Payload={\"a\"=1}"])
    assert cli._parameters(args.parameter) == {"MaintenanceSchedule": "@every 30s",
                                               "Payload": "{\"a\"=1}"}
    with pytest.raises(SystemExit):
        cli._parameters(["no-equals-sign"])


def test_an_unknown_parameter_stops_up_with_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    previous = signal.getsignal(signal.SIGTERM)  # `up` installs its own handler
    try:
        code = cli.main(["up", "--state-dir", str(tmp_path), "--template", str(TEMPLATE),
                         "-p", "Nope=1"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown parameter override(s) ['Nope']" in err and "Traceback" not in err
    assert not (tmp_path / "endpoints.json").exists()
