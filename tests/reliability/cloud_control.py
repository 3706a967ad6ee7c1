"""What the batch and orphan tests do to a local cloud from outside, as a user could: inject
faults through ``/_emulator/faults``, count calls through ``/_emulator/calls``, run a function
once through FC's invoke API (aliyun-fc2), and read Cloud Assistant through the ECS SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest

from local.cloud import DEFAULT_TEMPLATE
from local.fc_client import FunctionCompute
from tests.localcloud import Endpoints

REPO = Path(__file__).resolve().parents[2]
RECONCILE_EVENT = (REPO / "events" / "timer-reconcile.json").read_bytes()


def control(endpoints: Endpoints, service: str, name: str, body: Any = None,
            method: str = "GET") -> Any:
    return endpoints.control(service, name, body, method)


def add_faults(endpoints: Endpoints, service: str, *rules: dict[str, Any]) -> None:
    """Append fault rules, in order: a call takes the first rule that matches it."""
    control(endpoints, service, "faults", list(rules))


def clear_faults(endpoints: Endpoints, service: str) -> None:
    control(endpoints, service, "faults", method="DELETE")


def calls(endpoints: Endpoints, service: str = "ecs", reset: bool = False) -> dict[str, int]:
    found: dict[str, int] = control(endpoints, service, "calls",
                                    method="DELETE" if reset else "GET").get("calls", {})
    return found


def reconcile_now(endpoints: Endpoints) -> dict[str, Any]:
    """One run of the reconciler, through FC's invoke API (its timer would do the same)."""
    fc = FunctionCompute(endpoints["fc"], endpoints["access_key_id"],
                         endpoints["access_key_secret"])
    answer = fc.invoke("assistflow", "assistflow-reconcile", RECONCILE_EVENT)
    assert not answer.failed, answer.error_message
    report: dict[str, Any] = json.loads(answer.data)
    return report


def command_exists(endpoints: Endpoints, command_id: str) -> bool:
    req = DescribeCommandsRequest()
    req.set_CommandId(command_id)
    return bool(endpoints.call(req)["Commands"]["Command"])


def keys(endpoints: Endpoints, prefix: str) -> list[str]:
    import oss2

    return [o.key for o in oss2.ObjectIterator(endpoints.bucket(), prefix=prefix)]


def template_with_timeouts(target: Path, **timeouts: int) -> Path:
    """template.yml with other function Timeouts (by logical id), its code where it is."""
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    for logical_id, resource in template["Resources"].items():
        meta = (resource.get("Metadata") or {}).get("assistflow") or {}
        if "CodeDir" in meta:
            meta["CodeDir"] = str(REPO / meta["CodeDir"])
        if logical_id in timeouts:
            resource["Properties"]["Timeout"] = timeouts[logical_id]
    target.write_text(yaml.safe_dump(template, sort_keys=False))
    return target
