"""The local fleet: which instances exist, what they run, and how they execute commands.

The inventory is a JSON file in the state directory (``instances.json``), created with a
default fleet on first start and read again on every start, so you can edit it by hand:

```json
{"instances": [
  {"InstanceId": "i-local00000000000001", "InstanceName": "web-1", "OSType": "linux",
   "Status": "Running", "AgentInstalled": true, "AgentVersion": "2.2.3.398",
   "Mode": "process"},
  {"InstanceId": "i-sim...", "Mode": "simulated",
   "Simulated": {"Output": "ok\\n", "ExitCode": 0, "Duration": 0.5}}
]}
```

``Mode`` ``process`` runs the script for real (``/bin/sh`` in the instance's sandbox, see
``sandbox.py``); ``simulated`` runs nothing and reports ``Simulated`` after ``Duration``
seconds of the emulator's clock — for fleets of thousands.

``Tags`` (``{"team": "ops"}``, default none) are the instance's tags: what a RAM policy's
``acs:ResourceTag/<key>`` condition is judged on (``local/ram.py``) and what DescribeInstances'
``Tag.N`` filter selects. ``ResourceGroupId`` (``"rg-…"``, default none: the account's default
resource group) is its resource group, DescribeInstances' ``ResourceGroupId`` filter.

An entry with ``"Count": N`` declares N alike instances at once: its ``InstanceId`` is a
prefix, completed by a zero-padded number (``"i-sim"`` with ``Count`` 10000 gives
``i-sim00001`` … ``i-sim10000``), and ``InstanceName`` likewise gets ``-<n>``:

```json
{"InstanceId": "i-sim", "InstanceName": "sim", "Count": 10000, "Mode": "simulated",
 "Tags": {"fleet": "big"}, "ResourceGroupId": "rg-bigfleet"}
```

(every instance of the entry carries its ``Tags`` and ``ResourceGroupId``).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_AGENT_VERSION = "2.2.3.398"
# "You can add up to 20 tags to an instance" (TagResources, https://www.alibabacloud.com/help/en/
# ecs/developer-reference/api-ecs-2014-05-26-tagresources)
MAX_TAGS = 20
RESOURCE_GROUP = re.compile(r"rg-[a-z0-9]{1,64}")  # e.g. rg-acfmxazb4ph6aiy


@dataclass
class SimulatedRun:
    Output: str = "simulated\n"
    ExitCode: int = 0
    Duration: float = 0.2


@dataclass
class Instance:
    InstanceId: str
    InstanceName: str = ""
    OSType: str = "linux"  # "linux" | "windows", as DescribeInstances spells it
    Status: str = "Running"  # Running | Stopped | Starting | Stopping | Pending
    AgentInstalled: bool = True
    AgentVersion: str = DEFAULT_AGENT_VERSION
    Mode: str = "process"  # process | simulated
    Simulated: SimulatedRun = field(default_factory=SimulatedRun)
    RegionId: str = ""
    ZoneId: str = ""
    OSName: str = ""
    InstanceType: str = "ecs.g7.large"
    Tags: dict[str, str] = field(default_factory=dict)
    ResourceGroupId: str = ""  # "": the default resource group

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        data = dict(data)
        sim = data.pop("Simulated", None)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"instance {data.get('InstanceId')!r}: unknown fields {sorted(unknown)}")
        inst = cls(**data)
        if sim is not None:
            inst.Simulated = SimulatedRun(**sim)
        if not inst.InstanceId.startswith("i-"):
            raise ValueError(f"instance id {inst.InstanceId!r} must start with 'i-'")
        if inst.OSType not in ("linux", "windows") or inst.Mode not in ("process", "simulated"):
            raise ValueError(f"instance {inst.InstanceId}: OSType linux|windows, Mode process|simulated")
        if not isinstance(inst.Tags, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in inst.Tags.items()):
            raise ValueError(f"instance {inst.InstanceId}: Tags is an object of strings, "
                             '{"key": "value"}')
        if len(inst.Tags) > MAX_TAGS:
            raise ValueError(f"instance {inst.InstanceId}: at most {MAX_TAGS} Tags (ECS allows "
                             "20 per resource)")
        if not isinstance(inst.ResourceGroupId, str) or not (
                inst.ResourceGroupId == "" or RESOURCE_GROUP.fullmatch(inst.ResourceGroupId)):
            raise ValueError(f"instance {inst.InstanceId}: ResourceGroupId is rg- and letters "
                             "or digits, e.g. rg-aek2ops")
        return inst

    @property
    def ready(self) -> bool:
        """Running with a live agent: what DescribeCloudAssistantStatus reports as "true"."""
        return self.Status == "Running" and self.AgentInstalled


def default_fleet() -> list[Instance]:
    """Three working Linux instances plus one of each failure path Cloud Assistant has, tagged
    so that a selector shows each case: ``role=web`` (two running web servers, in resource
    group ``rg-localweb``, and the stopped one), ``role=worker`` (``rg-localworker``), and
    ``env=local`` on all six."""
    web, worker = {"env": "local", "role": "web"}, {"env": "local", "role": "worker"}
    return [
        Instance("i-local00000000000001", "local-linux-1", Tags=dict(web),
                 ResourceGroupId="rg-localweb"),
        Instance("i-local00000000000002", "local-linux-2", Tags=dict(web),
                 ResourceGroupId="rg-localweb"),
        Instance("i-local00000000000003", "local-linux-3", Tags=dict(worker),
                 ResourceGroupId="rg-localworker"),
        Instance("i-local0000000000000s", "local-stopped", Status="Stopped", Tags=dict(web),
                 ResourceGroupId="rg-localweb"),
        Instance("i-local0000000000000n", "local-no-agent", AgentInstalled=False, AgentVersion="",
                 Tags={"env": "local"}),
        Instance("i-local0000000000000w", "local-windows", OSType="windows", Mode="simulated",
                 Tags={"env": "local", "os": "windows"}),
    ]


def expand(entry: dict[str, Any]) -> list[Instance]:
    """One inventory entry as instances: itself, or ``Count`` numbered copies of it."""
    if "Count" not in entry:
        return [Instance.from_json(entry)]
    entry = dict(entry)
    count = int(entry.pop("Count"))
    if count < 1:
        raise ValueError(f"entry {entry.get('InstanceId')!r}: Count must be at least 1")
    prefix = entry.get("InstanceId", "i-sim")
    name = entry.get("InstanceName", "")
    width = max(5, len(str(count)))
    template = Instance.from_json({**entry, "InstanceId": prefix})
    out = []
    for n in range(1, count + 1):
        inst = copy.copy(template)  # SimulatedRun is shared: it is never mutated
        inst.InstanceId = f"{prefix}{n:0{width}d}"
        inst.InstanceName = f"{name}-{n}" if name else inst.InstanceId
        out.append(inst)
    return out


def load_inventory(path: Path) -> list[Instance]:
    """Instances from ``path``, writing the default fleet there first if it does not exist."""
    if not path.exists():
        save_inventory(path, default_fleet())
    data = json.loads(path.read_text())
    instances = [inst for item in data.get("instances", []) for inst in expand(item)]
    ids = [i.InstanceId for i in instances]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: duplicate instance ids")
    return instances


def save_inventory(path: Path, instances: list[Instance]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"instances": [asdict(i) for i in instances]}, indent=2) + "\n")
    tmp.replace(path)
