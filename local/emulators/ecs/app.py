"""The ECS 2014-05-26 RPC endpoint: Cloud Assistant's API actions on ``EmulatorApp``'s pipeline.

``parse`` reads the action and its parameters (``wire.py``), ``authenticate`` verifies either
signature scheme (``signing.py``), the operation runs (``operations.py``) and its answer, or
its ``EcsError``, is rendered as JSON with the request's ``RequestId``.

Control paths beside the base ones (``/_emulator/...``):

* ``POST advance`` ``{"seconds": s}`` — move the clock and return once every run, period and
  simulated result that became due has been processed (no sleeping in tests).
* ``POST reboot`` ``{"InstanceIds": [...]}`` — the instances restart: NextRebootOnly and
  EveryReboot invocations run on them.
* ``POST inventory`` — re-read ``instances.json`` after editing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from local.emulators.base import Call, Clock, EmulatorApp, KeyRing, ServiceError, json_response
from local.emulators.ecs import wire
from local.emulators.ecs.errors import EcsError, ForbiddenRam, InvalidActionNotFound
from local.emulators.ecs.model import LOCAL_ACCOUNT_ID, EcsModel
from local.emulators.ecs.operations import OPERATIONS
from local.emulators.ecs.signing import EcsAuthenticator
from local.ram import Decision, RamRequest

# The resources RAM checks per action — (resource type, the parameter naming it) — as ECS's
# RAM authorization reference lists them
# (https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-ram): e.g.
# ecs:InvokeCommand on acs:ecs:{region}:{account}:command/{CommandId} and on
# ...:instance/{InstanceId} for each instance. A parameter the call leaves out stands for every
# resource of its type (``instance/*``); CreateCommand is always ``command/*``.
RAM_RESOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "CreateCommand": (("command", ""),),
    "ModifyCommand": (("command", "CommandId"),),
    "DeleteCommand": (("command", "CommandId"),),
    "DescribeCommands": (("command", "CommandId"),),
    "InvokeCommand": (("command", "CommandId"), ("instance", "InstanceId")),
    "RunCommand": (("instance", "InstanceId"),),
    "StopInvocation": (("instance", "InstanceId"),),
    "DescribeInvocations": (("instance", "InstanceId"), ("command", "CommandId")),
    "DescribeInvocationResults": (("command", "CommandId"), ("instance", "InstanceId")),
    "DescribeInstances": (("instance", "InstanceIds"),),
    "DescribeCloudAssistantStatus": (("instance", "InstanceId"),),
    "ListTagResources": (("instance", "ResourceId"),),
}


class EcsApp(EmulatorApp):
    """ECS RPC endpoint backed by the Cloud Assistant model."""

    service = "ecs"
    error = EcsError
    operations = OPERATIONS

    def __init__(self, keyring: KeyRing, state_dir: Path, clock: Clock | None = None,
                 region: str = "cn-hangzhou", agent_workers: int = 32,
                 account_id: str = LOCAL_ACCOUNT_ID) -> None:
        super().__init__(keyring, clock)
        # agent_workers: process-mode runs at once; the rest wait as Pending
        self.model = EcsModel(state_dir, self.clock, region, agent_workers)
        self.model.account_id = account_id  # in RAM ARNs, events and {{ACS::AccountId}}
        self.auth = EcsAuthenticator(keyring)

    def parse(self, call: Call) -> None:
        request = wire.read_request(call.request)
        call.action = wire.action_of(request)
        if call.action not in self.operations:
            raise InvalidActionNotFound(action=call.action)
        call.params = wire.Params(request.params, request)

    def authenticate(self, call: Call) -> None:
        signed = call.params.signed  # as ``parse`` read it
        call.access_key_id = self.auth.verify(signed if signed is not None
                                              else wire.read_request(call.request))

    def render(self, call: Call, result: Any) -> Response:
        return wire.answer(result, call.request_id)

    def ram_request(self, call: Call) -> RamRequest:
        """The (action, ARN) pairs of ``RAM_RESOURCES``, with the tags of each named instance
        that exists (what an ``acs:ResourceTag`` condition is judged on)."""
        p: wire.Params = call.params
        arn = f"acs:ecs:{p.text('RegionId') or self.model.region}:{self.model.account_id}:"
        request = RamRequest(())
        for kind, name in RAM_RESOURCES[call.action]:
            ids = (p.repeated(name) or ([p.text(name)] if p.text(name) else [])) if name else []
            known = self.model.instances if kind == "instance" else {}
            request += RamRequest.of(
                f"ecs:{call.action}", [f"{arn}{kind}/{i}" for i in ids] or [f"{arn}{kind}/*"],
                {f"{arn}{kind}/{i}": known[i].Tags for i in ids if i in known})
        return request

    def ram_denied(self, call: Call, decision: Decision) -> ServiceError:
        return ForbiddenRam()

    def render_error(self, call: Call, error: ServiceError) -> Response:
        return wire.error_answer(error, call.request_id)

    # --- control API -----------------------------------------------------------------------
    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        if name == "advance" and request.method == "POST":
            return json_response({"now": self.advance(float(body.get("seconds", 0)))})
        if name == "reboot" and request.method == "POST":
            ids = [str(i) for i in body.get("InstanceIds", [])]
            unknown = [i for i in ids if i not in self.model.instances]
            if unknown:
                raise ValueError(f"no such instances: {unknown}")
            self.model.reboot(ids)
            self.model.agent.scheduler.wait_idle()
            return json_response({"rebooted": ids})
        if name == "inventory" and request.method == "POST":
            self.model.reload_inventory()
            return json_response({"instances": len(self.model.instances)})
        return super().control_extra(name, request, body)

    def advance(self, seconds: float) -> float:
        """Move the emulator's clock and wait until all work that fell due is done."""
        self.clock.advance(seconds)
        if not self.model.agent.scheduler.wait_idle():
            raise ValueError("scheduled work did not settle within 10 s")
        return self.clock.now()

    def dump_state(self) -> dict[str, Any]:
        return {**self.model.dump(), "calls": self.calls.snapshot()}
