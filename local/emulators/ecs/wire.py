"""ECS RPC wire layer: signed query in, JSON out.

aliyunsdkcore sends every parameter in the query string of a POST (research
cloud-assistant-api.md §2.3); a form body is accepted too. The action comes from ``Action``
(RPC v1.0) or the ``x-acs-action`` header (ACS3, the newer Tea SDKs); ``signing.py`` verifies
either scheme. Errors are ``{"RequestId", "HostId", "Code", "Message"}`` with the HTTP status
the real service uses.

Control paths beside the base ones (``/_emulator/...``):

* ``POST advance`` ``{"seconds": s}`` — move the clock and return once every run, period and
  simulated result that became due has been processed (no sleeping in tests).
* ``POST reboot`` ``{"InstanceIds": [...]}`` — the instances restart: NextRebootOnly and
  EveryReboot invocations run on them.
* ``POST inventory`` — re-read ``instances.json`` after editing it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from local.emulators.base import (
    Clock,
    EmulatorApp,
    KeyRing,
    json_response,
    new_request_id,
)
from local.emulators.ecs import handlers
from local.emulators.ecs.errors import EcsError, InvalidActionNotFound
from local.emulators.ecs.model import EcsModel
from local.emulators.ecs.params import Params
from local.emulators.ecs.signing import (  # re-exported: older callers import them from here
    Authenticator,
    SignedRequest,
    rpc_signature,
    rpc_string_to_sign,
)
from local.emulators.server import raw_headers

__all__ = ["EcsApp", "rpc_signature", "rpc_string_to_sign"]

HOST_ID = "ecs.aliyuncs.com"


class EcsApp(EmulatorApp):
    """ECS 2014-05-26 RPC endpoint backed by the Cloud Assistant model."""

    service = "ecs"

    def __init__(self, keyring: KeyRing, state_dir: Path, clock: Clock | None = None,
                 region: str = "cn-hangzhou", agent_workers: int = 32) -> None:
        super().__init__(keyring, clock)
        # agent_workers: process-mode runs at once; the rest wait as Pending
        self.model = EcsModel(state_dir, self.clock, region, agent_workers)
        self.auth = Authenticator(keyring)

    def dispatch(self, request: Request) -> Response:
        request_id = new_request_id()
        body = request.get_data(cache=True)
        query = parse_qsl(request.environ.get("QUERY_STRING", ""), keep_blank_values=True)
        params = dict(query)
        if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        headers = raw_headers(request.environ)
        action = params.get("Action") or headers.get("x-acs-action", "")
        self.calls.add(action)
        try:
            self.auth.verify(SignedRequest(request.method, request.path, query, params, headers,
                                           body))
            rule = self.faults.take(action)
            if rule is not None:
                if rule.delay:
                    time.sleep(rule.delay)  # a slow network, in real time: the SDK's timeouts
                if rule.code:
                    raise EcsError.from_code(rule.code, rule.message or None, rule.status)
            handler = handlers.ACTIONS.get(action)
            if handler is None:
                raise InvalidActionNotFound(action=action)
            answer = handler(self.model, Params(params))
        except EcsError as err:
            return json_response({"RequestId": request_id, "HostId": HOST_ID,
                                  "Code": err.code, "Message": err.message}, err.status)
        answer["RequestId"] = request_id
        return json_response(answer)

    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        if name == "advance" and request.method == "POST":
            return json_response({"now": self.advance(float(body.get("seconds", 0)))})
        if name == "reboot" and request.method == "POST":
            ids = [str(i) for i in body.get("InstanceIds", [])]
            for instance_id in ids:
                self.model.instance(instance_id)
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

    def reset_state(self) -> None:
        self.model.reset()

    def close(self) -> None:
        self.model.close()
