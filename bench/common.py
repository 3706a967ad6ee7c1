"""What every benchmark shares: a local cloud in a temporary state directory, signed webhook
posts and a ledger that attributes function invocations to Cloud Assistant invocations
(statistics, the machine and the RSS sampler are in ``bench/measure.py``).

Everything reaches the local cloud the way a user's code would (official SDKs, signed
webhooks, the emulators' control API); two things are read in-process because the wire cannot
give them precisely enough: an object's store time (OSS ``Last-Modified`` has a 1 s
resolution, the emulator's store keeps the float) and which InvokeId each function invocation
worked for (``FunctionRuntime.invoke`` is wrapped on the instance; the durations themselves
come from ``host/invocations.jsonl``, what the host bills).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import oss2
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest

from local.cloud import LocalCloud
from local.emulators.ecs.inventory import default_fleet
from local.host.runtime import FunctionRuntime, Invocation
from local.profile import Profile
from shared import webhook
from shared.collector_events import LateEvent, TaskCompleted, collector_items
from shared.errors import AssistflowError

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

SUBMIT_HTTP = "assistflow-submit-http"
COLLECT = "assistflow-collect"

# aliyunsdkcore ignores NO_PROXY: loopback calls must not see a proxy from the environment.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
             "ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"):
    os.environ.pop(_var, None)


def quiet_logs(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not verbose:
        # Stopping a cloud with invocations in flight logs expected warnings (InstanceCrashed).
        logging.getLogger("assistflow").setLevel(logging.ERROR)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- which InvokeId each function invocation worked for ------------------------------------------
@dataclass
class Entry:
    """One function invocation, as the wrapped runtime saw it."""

    function: str
    request_id: str
    kind: str  # submit | event | followup | late_event | other
    invoke_ids: tuple[str, ...]
    finished: tuple[str, ...]  # invoke ids this invocation finished (summary written)
    ok: bool
    duration_ms: float
    cold: bool
    ended_at: float


@dataclass
class Ledger:
    """Wraps ``FunctionRuntime.invoke`` of the given runtimes and files every invocation under
    the InvokeIds it served, read from its event and its result.

    The invoking thread only keeps the raw invocation; reading its event and result (JSON)
    waits until someone asks (``entries``, ``by_invoke``, the waits), so the benchmark's own
    bookkeeping does not load the local cloud's process while a fan-out is measured."""

    _raw: list[tuple[str, bytes, Invocation, float]] = field(default_factory=list)
    _entries: list[Entry] = field(default_factory=list)
    _by_invoke: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    cond: threading.Condition = field(default_factory=threading.Condition)

    def attach(self, runtime: FunctionRuntime) -> None:
        original = runtime.invoke
        name = runtime.spec.name

        def invoke(event: bytes, request_id: str | None = None) -> Invocation:
            inv = original(event, request_id)
            with self.cond:
                self._raw.append((name, event, inv, time.time()))
                self.cond.notify_all()
            return inv

        setattr(runtime, "invoke", invoke)  # noqa: B010 (an instance attribute, not the class's)

    def _drain(self) -> None:
        """File what came in since the last look (the caller holds ``cond``)."""
        raw, self._raw = self._raw, []
        for function, event, inv, ended in raw:
            try:
                kind, ids, finished = classify(function, event, inv)
            except Exception as exc:  # never break the benchmark over one odd invocation
                log(f"ledger: could not attribute a {function} invocation: {exc!r}")
                continue
            entry = Entry(function, inv.request_id, kind, ids, finished, inv.ok,
                          inv.duration_ms, inv.cold, ended)
            self._entries.append(entry)
            for invoke_id in ids:
                self._by_invoke[invoke_id].append(entry)

    @property
    def entries(self) -> list[Entry]:
        with self.cond:
            self._drain()
            return list(self._entries)

    @property
    def by_invoke(self) -> dict[str, list[Entry]]:
        """Entries by InvokeId (call it under ``cond``, as ``wait``'s predicates are)."""
        with self.cond:
            self._drain()
            return self._by_invoke

    def wait_finished(self, invoke_ids: Iterable[str], timeout: float) -> bool:
        """Until an invocation that finished each of ``invoke_ids`` (wrote its summary) returned."""
        wanted = set(invoke_ids)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                self._drain()
                done = {i for i in wanted
                        if any(i in e.finished for e in self._by_invoke.get(i, ()))}
                if done == wanted:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
            return True

    def of(self, invoke_id: str) -> list[Entry]:
        with self.cond:
            self._drain()
            return list(self._by_invoke.get(invoke_id, ()))

    def count(self, function: str, kind: str | None = None) -> int:
        with self.cond:
            self._drain()
            return sum(1 for e in self._entries
                       if e.function == function and (kind is None or e.kind == kind))


def classify(function: str, event: bytes, inv: Invocation) -> tuple[str, tuple[str, ...],
                                                                    tuple[str, ...]]:
    """(kind, invoke ids served, invoke ids finished) of one invocation."""
    result = inv.result if isinstance(inv.result, dict) else {}
    if function == SUBMIT_HTTP:
        try:
            body = json.loads(result.get("body") or "{}")
        except ValueError:
            body = {}
        return "submit", tuple(body.get("InvokeIds") or ()), ()
    if function != COLLECT:
        return "other", (), ()
    finished = tuple(str(item.get("InvokeId")) for item in
                     (result.get("events") or []) + (result.get("collected") or [])
                     if item.get("Finished"))
    try:
        items = collector_items(event)
    except AssistflowError:
        return "other", (), finished
    kind = "followup"
    ids: list[str] = []
    for item in items:
        if isinstance(item, TaskCompleted):
            kind = "event"
            ids.append(item.invoke_id)
        elif isinstance(item, LateEvent):
            kind = "late_event"
            ids.append(item.event.invoke_id)
        else:
            ids.append(item.invoke_id)
    return kind, tuple(ids), finished


def billed_ms(jsonl: Path, request_ids: Iterable[str]) -> float:
    """Summed ``duration_ms`` of those requests in the host's ``invocations.jsonl`` (every
    attempt of a retried request included: each one is billed)."""
    wanted = set(request_ids)
    total = 0.0
    for record in read_jsonl(jsonl):
        if record.get("request_id") in wanted:
            total += float(record.get("duration_ms") or 0.0)
    return total


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


# --- a local cloud for one benchmark -------------------------------------------------------------
def simulated_entry(count: int, duration: float, output: str = "simulated\n",
                    prefix: str = "i-sim") -> dict[str, Any]:
    """An inventory entry declaring ``count`` alike simulated instances (ids ``i-sim00001``…)."""
    return {"InstanceId": prefix, "InstanceName": "sim", "Count": count, "Mode": "simulated",
            "Simulated": {"Output": output, "ExitCode": 0, "Duration": duration}}


def simulated_ids(count: int, prefix: str = "i-sim") -> list[str]:
    width = max(5, len(str(count)))
    return [f"{prefix}{n:0{width}d}" for n in range(1, count + 1)]


class Cloud:
    """A ``LocalCloud`` in a fresh temporary state directory, removed again on ``stop()``;
    under ``profile`` (default ``fast``, whatever ``ASSISTFLOW_PROFILE`` says)."""

    def __init__(self, name: str, parameters: dict[str, Any] | None = None,
                 extra_instances: list[dict[str, Any]] | None = None,
                 template: Callable[[Path], Path] | None = None,
                 max_instances: int = 4, profile: Profile | None = None) -> None:
        self.state = Path(tempfile.mkdtemp(prefix=f"assistflow-bench-{name}-"))
        if extra_instances:
            fleet = [asdict(i) for i in default_fleet()] + extra_instances
            (self.state / "instances.json").write_text(json.dumps({"instances": fleet}))
        params = {"MaintenanceEnabled": False, **(parameters or {})}
        kwargs: dict[str, Any] = {}
        if template is not None:
            kwargs["template"] = template(self.state)
        self.local = LocalCloud(self.state, parameters=params, max_instances=max_instances,
                                profile=profile or Profile.fast(), **kwargs)
        self.e: dict[str, Any] = {}
        self.ledger = Ledger()

    def start(self) -> Cloud:
        self.e = self.local.start()
        assert self.local.host is not None
        for fn in (SUBMIT_HTTP, COLLECT):
            self.ledger.attach(self.local.host.runtimes[fn])
        return self

    def stop(self) -> None:
        try:
            self.local.stop()
        finally:
            shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> Cloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients --------------------------------------------------------------------------
    @property
    def jsonl(self) -> Path:
        return self.state / "host" / "invocations.jsonl"

    @property
    def runtimes(self) -> dict[str, FunctionRuntime]:
        assert self.local.host is not None
        return self.local.host.runtimes

    def acs(self) -> AcsClient:
        client = AcsClient(self.e["access_key_id"], self.e["access_key_secret"], self.e["region"],
                           proxy={"http": None, "https": None})
        client.add_endpoint(self.e["region"], "Ecs", self.e["ecs"].split("://", 1)[1])
        return client

    def call(self, request: RpcRequest, client: AcsClient | None = None) -> dict[str, Any]:
        raw = (client or self.acs()).do_action_with_exception(request)
        result: dict[str, Any] = json.loads(raw)
        return result

    def bucket(self) -> oss2.Bucket:
        auth = oss2.Auth(self.e["access_key_id"], self.e["access_key_secret"])
        return oss2.Bucket(auth, self.e["oss"], self.e["results_bucket"])

    def post(self, body: dict[str, Any], timeout: float = 120) -> tuple[int, dict[str, Any]]:
        """A signed webhook delivery; (status, JSON body)."""
        status, raw = webhook.post(self.e["webhook_url"], self.e["webhook_secret"],
                                   json.dumps(body).encode(), timeout=timeout,
                                   use_env_proxy=False)
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"raw": raw.decode("utf-8", "replace")}

    def ecs_calls(self, reset: bool = False) -> dict[str, int]:
        """Requests per action the ECS emulator received (``DELETE`` also zeroes them)."""
        req = urllib.request.Request(self.e["ecs"] + "/_emulator/calls",
                                     method="DELETE" if reset else "GET")
        with urllib.request.urlopen(req, timeout=30) as resp:
            calls: dict[str, int] = json.loads(resp.read())["calls"]
        return calls

    def emulator_calls(self, service: str) -> dict[str, Any]:
        """One emulator's ``/_emulator/calls`` so far: requests (``calls``) and pipeline CPU ms
        (``cpu_ms``) per action, its request threads' ``server_cpu`` and, for one in a process
        of its own, that process's ``process_cpu_s``."""
        with urllib.request.urlopen(self.e[service] + "/_emulator/calls", timeout=30) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
        return answer

    # --- results --------------------------------------------------------------------------
    def stored_at(self, key: str) -> float | None:
        """When the object was stored (the emulator's float clock), None if it is not there:
        the OSS emulator's ``/_emulator/buckets/<bucket>/objects`` (it runs in a process of
        its own)."""
        query = urllib.parse.urlencode({"prefix": key})
        url = f"{self.e['oss']}/_emulator/buckets/{self.e['results_bucket']}/objects?{query}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                objects = json.loads(resp.read())["objects"]
        except (OSError, ValueError, KeyError):
            return None
        return next((float(o["stored_at"]) for o in objects if o["key"] == key), None)

    def read(self, key: str) -> bytes | None:
        try:
            return bytes(self.bucket().get_object(key).read())
        except oss2.exceptions.NoSuchKey:
            return None

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key of the results bucket under ``prefix``, listed through oss2."""
        return [o.key for o in oss2.ObjectIterator(self.bucket(), prefix=prefix, max_keys=1000)]
