"""The CLI's shared pieces: exit codes, which cloud, output, the progress views, events."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from local import cli
from local.cli import common, localcloud
from local.cli.watch import PlainView, RichView, Tally, view_for
from shared.errors import CloudCallError, ConfigError, NotAllowedError, Violation


def test_http_statuses_map_to_the_documented_exit_codes() -> None:
    assert [common.code_for_status(s) for s in (202, 400, 401, 403, 413, 415, 422, 500, 503)] \
        == [0, 3, 4, 4, 4, 4, 4, 5, 5]
    assert common.cloud_error(CloudCallError("X", "Throttling", "slow down", True)).code == 5
    refused = common.cloud_error(CloudCallError("X", "InvalidInstance.NotFound", "no"))
    assert refused.code == 4 and "InvalidInstance.NotFound" in refused.message
    assert common.cloud_error(ConfigError("set X")).code == 2
    assert common.cloud_error(NotAllowedError("no", [Violation("$", "r", "m")])).code == 4


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for code in range(6):
        assert f"\n  {code}  " in out
    for command in ("up", "invoke", "events", "submit", "results", "invocations", "commands",
                    "check-template", "package"):
        assert f"\n    {command}" in out


def test_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["submit"])
    assert exited.value.code == 2
    assert "FILE" in capsys.readouterr().err


def test_region_means_alibaba_cloud_with_credentials_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                 "ALIBABA_CLOUD_SECURITY_TOKEN", "ASSISTFLOW_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    args = cli.build_parser().parse_args(["results", "t-1", "--region", "cn-shanghai",
                                          "--account-id", "1234567890123456",
                                          "--results-bucket", "my-results"])
    with pytest.raises(common.CliError) as missing:
        common.target(args)
    assert missing.value.code == 2 and "ALIBABA_CLOUD_ACCESS_KEY_ID" in missing.value.message

    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIexample")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "very-secret")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "sts-token")
    monkeypatch.setenv("ASSISTFLOW_WEBHOOK_SECRET", "hook-secret")
    where = common.target(args)
    settings = where.settings
    assert not where.local and settings.region == "cn-shanghai"
    assert settings.ecs_endpoint == ""  # the regional endpoint, over HTTPS (shared.clients)
    assert settings.mns_url == "https://1234567890123456.mns.cn-shanghai.aliyuncs.com"
    assert settings.oss_url == "https://oss-cn-shanghai.aliyuncs.com"  # public, not -internal
    assert settings.results_bucket == "my-results"
    assert settings.credentials.security_token == "sts-token"
    assert (settings.followup_queue, where.request_queue) == ("assistflow-followups",
                                                              "assistflow-requests")
    for secret in ("very-secret", "sts-token", "hook-secret"):
        assert secret not in repr(where)


def test_tables_align_and_show_empty_cells_as_dashes() -> None:
    out = io.StringIO()
    common.table([["i-1", "Success", 0, None, False], ["i-22", "Failed", 3, 1.25, True]],
                 ["INSTANCE", "STATUS", "EXIT", "DURATION", "TRUNCATED"], out)
    assert out.getvalue().splitlines() == [
        "INSTANCE  STATUS   EXIT  DURATION  TRUNCATED",
        "i-1       Success  0     -         no",
        "i-22      Failed   3     1.2       yes",
    ]


def test_progress_is_plain_lines_off_a_terminal_and_only_on_change() -> None:
    out = io.StringIO()
    view = view_for(out)
    assert isinstance(view, PlainView)
    view.update(Tally(total=3, done=1, failed=0, stored=0, invocations=1))
    view.update(Tally(total=3, done=1, failed=0, stored=0, invocations=1))
    view.update(Tally(total=3, done=2, failed=1, stored=1, invocations=1))
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    assert lines[0].endswith("1/3 instance(s) finished: 1 ok, 0 failed, 2 running; results "
                             "stored for 0/1 invocation(s)")
    assert "3/3 instance(s) finished: 2 ok, 1 failed, 0 running" in lines[1]


def test_progress_is_a_live_bar_on_a_terminal() -> None:
    from rich.console import Console

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(view_for(Terminal()), RichView)
    out = io.StringIO()
    view = RichView(out, Console(file=out, force_terminal=True, width=120))
    view.update(Tally(total=4, done=2, failed=1, stored=0, invocations=2))
    view.close()
    screen = out.getvalue()
    assert "\x1b[" in screen and "3/4" in screen
    assert "2 ok" in screen and "1 running" in screen and "1 failed" in screen
    assert "results 0/2" in screen


def test_events_lists_each_canonical_event_with_a_description(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["events"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["EVENT", "DESCRIPTION"]
    names = {line.split()[0] for line in out[1:]}
    assert {"http-submit", "timer", "mns-request", "mns-followup"} <= names
    described = localcloud.event_descriptions()
    assert described["timer"].startswith("timer trigger") and "submit_timer" in described["timer"]

    assert cli.main(["events", "timer.json"]) == 0
    event = json.loads(capsys.readouterr().out)
    assert event == json.loads((localcloud.EVENTS_DIR / "timer.json").read_text())
    assert cli.main(["events", "nope"]) == 2
    assert "no event 'nope'; there are: " in capsys.readouterr().err


def test_python_dash_m_local_is_the_same_command() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "local", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and "exit codes:" in done.stdout


def test_the_console_script_points_at_local_cli_main() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'assistflow = "local.cli:main"' in text
