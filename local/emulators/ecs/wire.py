"""ECS RPC wire layer: signed query in, JSON out.

aliyunsdkcore sends every parameter in the query string of a POST (research
cloud-assistant-api.md §2.3); a form body is accepted too. The signature is verified over all
parameters except ``Signature`` exactly as the SDK computes it, blank values included.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from hashlib import sha1
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from werkzeug.wrappers import Request, Response

from local.emulators.base import Clock, EmulatorApp, KeyRing, json_response, new_request_id
from local.emulators.ecs import handlers
from local.emulators.ecs.errors import EcsApiError
from local.emulators.ecs.model import CloudAssistant

log = logging.getLogger(__name__)

HOST_ID = "ecs.aliyuncs.com"


def _pct(value: str) -> str:
    return quote(value, safe="~")


def rpc_string_to_sign(method: str, params: dict[str, str]) -> str:
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items())
                         if k != "Signature")
    return f"{method}&%2F&{_pct(canonical)}"


def rpc_signature(secret: str, string_to_sign: str) -> str:
    digest = hmac.new((secret + "&").encode(), string_to_sign.encode(), sha1).digest()
    return base64.b64encode(digest).decode()


class EcsApp(EmulatorApp):
    """ECS 2014-05-26 RPC endpoint backed by the Cloud Assistant model."""

    service = "ecs"

    def __init__(self, keyring: KeyRing, state_dir: Path, clock: Clock | None = None,
                 region: str = "cn-hangzhou") -> None:
        super().__init__(keyring, clock)
        self.model = CloudAssistant(state_dir, self.clock, region)

    def dispatch(self, request: Request) -> Response:
        request_id = new_request_id()
        params = dict(parse_qsl(request.environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
            params.update(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
        action = params.get("Action", "")
        try:
            self._authenticate(request.method, params)
            rule = self.faults.take(action)
            if rule is not None:
                if rule.delay:
                    time.sleep(rule.delay)
                if rule.code:
                    raise EcsApiError(rule.code, rule.message or f"injected fault {rule.code}",
                                      rule.status)
            handler = handlers.ACTIONS.get(action)
            if handler is None:
                raise EcsApiError("InvalidAction.NotFound",
                                  f"Specified api \"{action}\" is not found, please check your url"
                                  " and method.", 404)
            body = handler(self.model, handlers.Params(params))
        except EcsApiError as err:
            return json_response({"RequestId": request_id, "HostId": HOST_ID,
                                  "Code": err.code, "Message": err.message}, err.status)
        body["RequestId"] = request_id
        return json_response(body)

    def _authenticate(self, method: str, params: dict[str, str]) -> None:
        access_key_id = params.get("AccessKeyId", "")
        if not access_key_id or "Signature" not in params:
            raise EcsApiError("MissingParameter", "AccessKeyId and Signature are required.", 400)
        secret = self.keyring.secret_for(access_key_id)
        if secret is None:
            raise EcsApiError("InvalidAccessKeyId.NotFound",
                              "Specified access key is not found.", 404)
        if not self.keyring.token_ok(access_key_id, params.get("SecurityToken")):
            raise EcsApiError("InvalidSecurityToken.Mismatch",
                              "Specified SecurityToken does not match the access key.", 400)
        if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
            raise EcsApiError("InvalidParameter.SignatureMethod",
                              "Only HMAC-SHA1 is supported by this RPC endpoint.", 400)
        sts = rpc_string_to_sign(method, params)
        if not hmac.compare_digest(rpc_signature(secret, sts), params["Signature"]):
            # The SDK splits this message on ':' and compares the tail with its own string.
            raise EcsApiError("SignatureDoesNotMatch",
                              "Specified signature is not matched with our calculation. "
                              f"server string to sign is:{sts}", 400)

    def dump_state(self) -> dict[str, Any]:
        invocations = []
        for inv in self.model.list_invocations():
            results = self.model.results(invoke_id=inv["invoke_id"])
            invocations.append({
                "InvokeId": inv["invoke_id"], "CommandId": inv["command_id"],
                "Results": {r["instance_id"]: r["status"] for r in results},
            })
        return {
            "instances": sorted(self.model.instances),
            "commands": [r["command_id"] for r in self.model.list_commands()],
            "invocations": invocations,
        }

    def reset_state(self) -> None:
        self.model.reset()

    def close(self) -> None:
        self.model.close()
