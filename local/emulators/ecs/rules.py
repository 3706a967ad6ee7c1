"""Cloud Assistant's pure rules: limits, status aggregation and ``{{parameter}}`` handling.

No state and no I/O: the model applies these, tests can call them directly. Limits and error
codes follow the API reference (https://help.aliyun.com/zh/ecs/developer-reference/ — the
pages of RunCommand, CreateCommand, InvokeCommand) and the request models of
``alibabacloud-ecs20140526`` 7.11.8, whose docstrings state each parameter's limits.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import TYPE_CHECKING

from local.emulators.ecs.errors import (
    CmdContentExceedLimit,
    CmdDescExceedLimit,
    CmdNameExceedLimit,
    CmdParamEmptyKey,
    CmdParamInvalidParamName,
    CmdParamNameExceedLimit,
    ContentWithParametersExceedLimit,
    DefinedParameterCountExceedLimit,
    InstanceIdsExceedLimit,
    InvalidCmdTypeNotFound,
    InvalidLauncherLengthLimitExceeded,
    InvalidParameter,
    InvalidRepeatModeNotFound,
    InvalidTerminationModeNotFound,
    MissingParamInstanceId,
    ParameterCountExceedLimit,
    ParameterDisabled,
    ParameterKeyExceedLimit,
    ParameterNotMatched,
    ReservedParamName,
    UsernameExceedLimit,
)

if TYPE_CHECKING:
    from local.emulators.ecs.entities import CommandSpec, InvokeSpec
    from local.emulators.ecs.inventory import Instance

COMMAND_TYPES = ("RunShellScript", "RunPowerShellScript", "RunBatScript")
REPEAT_MODES = ("Once", "Period", "NextRebootOnly", "EveryReboot", "DryRun")
TERMINATION_MODES = ("Process", "ProcessTree")
# CommandContent, and content with its Parameters, after Base64: 24 KB in the SDK's metadata
# (alibabacloud-ecs20140526 7.11.8), which is followed; the InvokeCommand page says 18 KB.
MAX_CONTENT_B64 = 24 * 1024
MAX_INSTANCES_PER_INVOKE = 100
MAX_INSTANCES_PER_STOP = 50
MAX_INSTANCES_PER_STATUS = 50
MAX_NAME = 128
MAX_DESCRIPTION = 512
MAX_WORKING_DIR = 200
MAX_USERNAME = 255
MAX_LAUNCHER = 1024
MAX_CLIENT_TOKEN = 64
MAX_PARAMETERS = 10  # pairs passed in Parameters ("0 to 10" in its docstring): a hard cap
MAX_DEFINED_PARAMETERS = 20  # {{names}} a command may define
MAX_PARAMETER_NAME = 64
MIN_INVOKE_TIMEOUT = 10
DEFAULT_TIMEOUT = 60
# Retained commands per region: 500 to 50,000 by account level (CreateCommand reference,
# https://help.aliyun.com/zh/ecs/developer-reference/api-ecs-2014-05-26-createcommand).
COMMAND_QUOTA = 500

TERMINAL = ("Success", "Failed", "Timeout", "Error", "Invalid", "Aborted", "Cancelled", "Terminated")
FAILED_CLASS = ("Failed", "Timeout", "Error", "Invalid", "Aborted")
STOPPED_CLASS = ("Cancelled", "Terminated")
BUILT_INS = ("ACS::RegionId", "ACS::AccountId", "ACS::InstanceId", "ACS::InstanceName",
             "ACS::InvokeId", "ACS::CommandId")
_PARAM = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)
_PARAM_NAME = re.compile(r"[A-Za-z0-9_-]+")


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def overall_status(statuses: list[str]) -> str:
    """Aggregate per-instance statuses the way DescribeInvocations reports ``InvocationStatus``.

    As documented for the API (https://help.aliyun.com/zh/ecs/developer-reference/
    api-ecs-2014-05-26-describeinvocations, and the ``InvokeStatus`` docstring of
    ``alibabacloud-ecs20140526`` 7.11.8): Pending / Scheduled / Running / Stopping while any
    instance is; ``Success`` when every instance is Success or stopped (Cancelled,
    Terminated) and at least one is Success; ``Failed`` when every instance failed (Failed,
    Timeout, Error, Invalid, Aborted) or was stopped; ``Stopped`` when all were stopped;
    ``PartialFailed`` when some succeeded and some failed.
    """
    for transient in ("Running", "Stopping", "Pending", "Scheduled"):
        if transient in statuses:
            return transient
    succeeded = "Success" in statuses
    failed = any(s in FAILED_CLASS for s in statuses)
    if succeeded and failed:
        return "PartialFailed"
    if succeeded:
        return "Success"
    return "Failed" if failed else "Stopped"


def legacy_status(status: str) -> str:
    """The deprecated ``InstanceInvokeStatus`` / ``InvokeRecordStatus`` wording."""
    if status in ("Success", "Failed"):
        return "Finished"  # even for a non-zero exit: the API reference's response sample
    if status in STOPPED_CLASS:
        return "Stopped"
    if status in FAILED_CLASS:
        return "Failed"
    if status in ("Stopping", "Pending", "Scheduled"):
        return status
    return "Running"


def legacy_overall(statuses: list[str]) -> str:
    """The deprecated overall ``InvokeStatus``: Running, Finished, Failed, PartialFailed, Stopped.

    Documented like ``InvocationStatus`` (same sources), with the legacy wording of each
    instance: a non-zero exit is ``Finished`` like a zero one, so the rule is
    ``overall_status`` with ``Failed`` runs counted as successes; instances stopped by hand
    beside finished ones still make the invocation ``Finished``.
    """
    overall = overall_status(["Success" if s == "Failed" else s for s in statuses])
    return {"Success": "Finished", "Failed": "Failed", "PartialFailed": "PartialFailed",
            "Stopped": "Stopped"}.get(overall, "Running")


def check_command(spec: CommandSpec) -> None:
    """CreateCommand's checks of a command (RunCommand's implicit one included)."""
    if spec.type not in COMMAND_TYPES:
        raise InvalidCmdTypeNotFound(type=spec.type, types=", ".join(COMMAND_TYPES))
    if len(spec.content_b64) > MAX_CONTENT_B64:
        raise CmdContentExceedLimit()
    try:
        script = base64.b64decode(spec.content_b64, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        raise InvalidParameter(param="CommandContent", detail="it is not valid Base64") from None
    check_limits(spec.name, spec.description, spec.working_dir, spec.timeout, spec.launcher)
    if spec.enable_parameter:
        check_definitions(script)


def check_limits(name: str, description: str, working_dir: str, timeout: int,
                 launcher: str) -> None:
    """The length limits CreateCommand and ModifyCommand share."""
    if len(name) > MAX_NAME:
        raise CmdNameExceedLimit()
    if len(description) > MAX_DESCRIPTION:
        raise CmdDescExceedLimit()
    if len(working_dir) > MAX_WORKING_DIR:
        raise InvalidParameter(param="WorkingDir", detail="it exceeds 200 characters")
    if timeout < 1:  # no maximum is documented
        raise InvalidParameter(param="Timeout", detail="it must be a positive number of seconds")
    if len(launcher.encode()) > MAX_LAUNCHER:
        raise InvalidLauncherLengthLimitExceeded()


def check_invoke(spec: InvokeSpec) -> None:
    """InvokeCommand's checks of its own parameters, before the command is looked up."""
    if spec.mode not in REPEAT_MODES:
        raise InvalidRepeatModeNotFound(mode=spec.mode)
    if spec.termination_mode and spec.termination_mode not in TERMINATION_MODES:
        raise InvalidTerminationModeNotFound(mode=spec.termination_mode)
    if not spec.instance_ids:
        raise MissingParamInstanceId()
    if len(spec.instance_ids) > MAX_INSTANCES_PER_INVOKE:
        raise InstanceIdsExceedLimit(limit=str(MAX_INSTANCES_PER_INVOKE),
                                     what="instances may be given per call")
    if spec.timeout is not None and spec.timeout < MIN_INVOKE_TIMEOUT:
        raise InvalidParameter(param="Timeout",
                               detail="an InvokeCommand timeout must be at least 10 seconds")
    if len(spec.username) > MAX_USERNAME:
        raise UsernameExceedLimit()
    if spec.working_dir is not None and len(spec.working_dir) > MAX_WORKING_DIR:
        raise InvalidParameter(param="WorkingDir", detail="it exceeds 200 characters")
    if spec.launcher is not None and len(spec.launcher.encode()) > MAX_LAUNCHER:
        raise InvalidLauncherLengthLimitExceeded()


def defined_parameters(script: str) -> list[str]:
    """The custom ``{{name}}`` parameters a command defines, built-ins excluded, in order."""
    names: dict[str, str] = {}
    for raw in _PARAM.findall(script):
        if raw.upper().startswith("ACS::"):
            continue
        names.setdefault(raw.lower(), raw)
    return list(names.values())


def check_definitions(script: str) -> None:
    """CreateCommand's checks of the ``{{name}}`` parameters in an EnableParameter command."""
    for raw in _PARAM.findall(script):
        if not raw:
            raise CmdParamEmptyKey()
        if raw.upper().startswith("ACS::"):
            if raw.upper() not in (b.upper() for b in BUILT_INS):
                raise ReservedParamName(name=raw)
            continue
        if not _PARAM_NAME.fullmatch(raw):
            raise CmdParamInvalidParamName(name=raw)
        if len(raw.encode()) > MAX_PARAMETER_NAME:
            raise CmdParamNameExceedLimit(name=raw[:20], limit=str(MAX_PARAMETER_NAME))
    if len(defined_parameters(script)) > MAX_DEFINED_PARAMETERS:
        raise DefinedParameterCountExceedLimit(limit=str(MAX_DEFINED_PARAMETERS))


def check_parameters(script: str, enabled: bool, values: dict[str, str]) -> dict[str, str]:
    """Validate a run's ``Parameters`` against the command (the content they fill in must
    still fit the content limit); the name → value map."""
    if not values:
        return {}
    if not enabled:
        raise ParameterDisabled()
    if len(values) > MAX_PARAMETERS:
        raise ParameterCountExceedLimit(limit=str(MAX_PARAMETERS))
    defined = {n.lower() for n in defined_parameters(script)}
    for key in values:
        if not key or len(key) > MAX_PARAMETER_NAME:
            raise ParameterKeyExceedLimit(limit=str(MAX_PARAMETER_NAME))
        if key.lower() not in defined:
            raise ParameterNotMatched(key=key)
    if len(base64.b64encode(substitute(script, values, {}).encode())) > MAX_CONTENT_B64:
        raise ContentWithParametersExceedLimit()
    return values


def substitute(script: str, values: dict[str, str], built_ins: dict[str, str]) -> str:
    """The script with ``{{name}}`` replaced; names the run did not pass become empty strings."""
    lowered = {k.lower(): v for k, v in values.items()}
    upper_builtins = {k.upper(): v for k, v in built_ins.items()}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.upper().startswith("ACS::"):
            return upper_builtins.get(name.upper(), match.group(0))
        return lowered.get(name.lower(), "")

    return _PARAM.sub(value, script)


def refusal(inst: Instance, command_type: str) -> tuple[str, str, str] | None:
    """Why the agent cannot take a run on ``inst``: (status, ErrorCode, ErrorInfo), or None."""
    # RunCommand / InvokeCommand refuse an unfit instance up front (``EcsModel.invoke``); a
    # run that falls due later (a schedule, a reboot) on an instance that has become unfit
    # ends at once with the per-instance ErrorCode DescribeInvocationResults documents —
    # Aborted when the task cannot be delivered, Invalid when the command does not fit the OS.
    if inst.Status != "Running":
        return ("Aborted", "InstanceNotRunning",
                f"the instance is {inst.Status}, commands need a Running instance")
    if not inst.AgentInstalled:
        return ("Aborted", "ClientNotRunning",
                "the Cloud Assistant agent is not installed or not running")
    if (command_type == "RunShellScript") != (inst.OSType == "linux"):
        return ("Invalid", "CommandNotApplicable",
                f"{command_type} cannot run on a {inst.OSType} instance")
    if inst.OSType == "windows" and inst.Mode == "process":
        return ("Error", "ExecutionException", "local process mode runs Linux shell only")
    return None
