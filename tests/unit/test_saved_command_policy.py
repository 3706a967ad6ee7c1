"""A saved command is judged by what it is: its own type, its id and its name (shared.policy)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import Credentials, Settings
from shared.errors import NotAllowedError, RequestInvalidError
from shared.policy import check_saved_command, command_allowed, needs_saved_command
from shared.preflight import SavedCommand
from shared.request import parse_request

SAVED_PS = SavedCommand("c-win0000000001", "RunPowerShellScript", "ops-windows", 60)
SAVED_SH = SavedCommand("c-lin0000000001", "RunShellScript", "ops-linux", 60)


def settings(**allow: Any) -> Settings:
    return Settings(region="cn-hangzhou", credentials=Credentials("ak", "sk"),
                    followup_queue="q", results_bucket="b", **allow)


def request(**fields: Any) -> Any:
    return parse_request({"CommandId": "c-win0000000001", "InstanceIds": ["i-w0000001"],
                          **fields})


def test_allowed_commands_match_ids_names_and_name_prefixes() -> None:
    assert command_allowed("c-x0000001", "anything", ())
    assert command_allowed("c-x0000001", "n", ("c-x0000001",))
    assert not command_allowed("c-x0000002", "c-x0000001", ("c-x0000001",))  # an id, not a name
    assert command_allowed("c-x0000002", "ops-disk", ("ops-*",))
    assert not command_allowed("c-x0000002", "dev-ops-disk", ("ops-*",))
    assert command_allowed("c-x0000002", "backup", ("ops-*", "backup"))
    assert not command_allowed("c-x0000002", "backup-all", ("backup",))  # exact without *


@pytest.mark.parametrize(("allow", "fields", "needed"), [
    ({}, {}, False),  # one call, as before: InvokeCommand alone
    ({"allowed_types": ("RunShellScript",)}, {}, True),
    ({"allowed_commands": ("ops-*",)}, {}, True),
    ({}, {"Type": "RunShellScript"}, True),  # a Type beside CommandId is checked against it
])
def test_the_saved_command_is_looked_up_first_only_when_something_judges_it(
        allow: dict[str, Any], fields: dict[str, Any], needed: bool) -> None:
    assert needs_saved_command(request(**fields), settings(**allow)) is needed
    content = parse_request({"Type": "RunShellScript", "CommandContent": "x",
                             "InstanceIds": ["i-w0000001"]})
    assert needs_saved_command(content, settings(**allow)) is False


def test_the_saved_commands_own_type_meets_the_allow_list() -> None:
    with pytest.raises(NotAllowedError) as info:
        check_saved_command(request(), SAVED_PS, settings(allowed_types=("RunShellScript",)))
    assert [(v.path, v.rule, v.value) for v in info.value.violations] == [
        ("$.CommandId", "allowList", "c-win0000000001")]
    assert "RunPowerShellScript" in info.value.violations[0].message
    check_saved_command(request(), SAVED_SH, settings(allowed_types=("RunShellScript",)))


def test_a_type_that_contradicts_the_saved_command_is_a_400_whatever_the_allow_list() -> None:
    for allow in ({}, {"allowed_types": ("RunShellScript", "RunPowerShellScript")}):
        with pytest.raises(RequestInvalidError) as info:
            check_saved_command(request(Type="RunShellScript"), SAVED_PS, settings(**allow))
        assert [(v.path, v.rule) for v in info.value.violations] == [("$.Type", "savedType")]
    check_saved_command(request(Type="RunPowerShellScript"), SAVED_PS, settings())


def test_allowed_commands_pin_which_saved_commands_run() -> None:
    pinned = settings(allowed_commands=("ops-linux", "c-win0000000001"))
    check_saved_command(request(), SAVED_PS, pinned)
    check_saved_command(request(), SAVED_SH, pinned)
    other = SavedCommand("c-oth0000000001", "RunShellScript", "ops-linux-2", 60)
    with pytest.raises(NotAllowedError) as info:
        check_saved_command(request(), other, pinned)
    assert "ops-linux-2" in info.value.violations[0].message


def test_allowed_commands_come_from_the_environment() -> None:
    env = {"FC_REGION": "cn-hangzhou", "ALIBABA_CLOUD_ACCESS_KEY_ID": "ak",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "sk", "ASSISTFLOW_FOLLOWUP_QUEUE": "q",
           "ASSISTFLOW_RESULTS_BUCKET": "b", "ASSISTFLOW_ALLOWED_COMMANDS": "c-a0000001, ops-*"}
    assert Settings.from_env(env).allowed_commands == ("c-a0000001", "ops-*")
