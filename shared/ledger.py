"""The request record: what the deployment meant to run for one logical request, and what ran.

``invocations/requests/{RequestId}.json`` is written *before* the first call that could run
anything (RunCommand, InvokeCommand), so a submit that dies after that call — FC's Timeout, a
crash — leaves its intent behind, and the reconciler (``shared.reconcile``) finds what it ran in
Cloud Assistant. It holds every batch of the request (at most 100 instances each) with its state:

* ``Pending`` — about to be invoked, or the outcome is unknown (the call failed in a way that
  may have reached Cloud Assistant, or the submit died);
* ``Invoked`` — it runs, under ``invoke_id``;
* ``NotStarted`` — refused for a reason that may pass (throttling, a 5xx): the same idempotency
  key delivered again resumes exactly these batches, with their own ClientTokens;
* ``Failed`` — refused for good; a redelivery answers the same.

A redelivery of the request (same idempotency key, same ``RequestId``) reads the record instead
of starting over: batches that run are answered from it, never invoked again.

Beside it, empty **open markers** under ``invocations/open/{RequestId}/`` say what is not done
yet, each named ``{slot}.{due}.{tries}`` — ``due`` the Unix second at which the reconciler should
look if the marker is still there (until then someone else owns the work), ``tries`` how often
the reconciler already acted on it:

* ``submit.*`` — some batch is not known to be invoked *and* followed up. Written with the
  record, due when the submit that wrote it has certainly ended (its function's Timeout plus a
  margin); removed by the submit once every batch runs (or failed for good) and has its
  follow-up; moved to "now" when a follow-up could not be sent, and a few minutes on while
  batches wait for a redelivery to resume them.
* ``{n}.*`` (batch number ``n``) — batch ``n`` runs and its results are not stored yet. Written
  with the batch's record and first follow-up, due when its follow-ups must have finished (the
  collector's deadline plus the longest follow-up delay); removed by the collector with the
  summary.

So "no open marker left" means every batch of the request was invoked and collected (or failed
for good), which is when an ad-hoc command made for it may be deleted (``shared.rollout.close_batch``). The
reconciler lists ``invocations/open/`` (ListObjects) and reads the due time from the key,
without reading any object.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from shared.config import RECORDS_PREFIX
from shared.errors import CloudCallError
from shared.followup import DEADLINE_MARGIN, WATCHDOG_MAX_DELAY, FollowUp

if TYPE_CHECKING:  # the collector imports this module: no schema compiled for it
    from shared.clients import CloudAssistant, Results
    from shared.request import CommandRequest

log = logging.getLogger("assistflow.ledger")

VERSION = 1
REQUESTS_PREFIX = f"{RECORDS_PREFIX}/requests"
OPEN_PREFIX = f"{RECORDS_PREFIX}/open"
SUBMIT = "submit"  # the slot of a request's intent marker

PENDING, INVOKED, NOT_STARTED, FAILED = "Pending", "Invoked", "NotStarted", "Failed"
RESOLVED = (INVOKED, FAILED)

LEASE_MARGIN = 10  # seconds past the submit's Timeout before its intent is someone else's
DEFAULT_LEASE = 300  # the submit's lease when it is not a function (the CLI's --via direct)
# A batch's follow-ups end by its deadline (the collector then stores what it has and stops);
# the last look can come one watchdog delay later. Past that, no follow-up is live.
COLLECT_SLACK = WATCHDOG_MAX_DELAY + 60


Skipped = tuple[str, str, str]  # (instance, reason, message): left out by pre-flight


@dataclass(frozen=True)
class Batch:
    """One InvokeCommand / RunCommand worth of instances and what became of it."""

    instances: tuple[str, ...]
    state: str = PENDING
    invoke_id: str = ""
    code: str = ""  # why it did not start (the cloud's error code)
    message: str = ""
    handed: bool = False  # invoked, and its record, first follow-up and marker all landed
    # its follow-ups' deadline, set by the dispatcher that invoked it (shared.dispatch_batch),
    # so that handing it over again puts the same open marker (0: not set)
    deadline: float = 0.0

    @property
    def resolved(self) -> bool:
        return self.state in RESOLVED


@dataclass(frozen=True)
class RequestRecord:
    """``invocations/requests/{RequestId}.json``."""

    request_id: str
    fingerprint: str  # what was asked, so a reused key with another request is told apart
    created_at: float
    lease_until: float  # the submit that wrote the intent has ended by then
    command_name: str
    content_sha256: str  # of the script ("" for a saved command): tells its invocations apart
    command_id: str  # the saved command's, the one created for the request, or RunCommand's
    deletes_command: bool  # the command was created for this request: delete it when done
    followup: FollowUp  # what every batch's first follow-up shares (no invoke id, no instances)
    batches: tuple[Batch, ...]
    skipped: tuple[Skipped, ...] = ()
    marker: str = ""  # the current intent marker's key ("" once every batch runs)
    version: int = VERSION
    # A request that selected its instances (shared.targets): the selector as it was sent
    # ({"Tags": [{"Key", "Value"}], "ResourceGroupId"}) and the sorted list it resolved to,
    # frozen: a redelivery runs on this list, never on a new resolution.
    selector: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    # Fan-out (shared.fanout): the batches are invoked by the dispatch function, each one's
    # state in its own object (batch_key) so that concurrent dispatchers never overwrite each
    # other; ``waves[n]`` is batch n's wave (RateControl), ``error_budget`` MaxErrors resolved
    # (None: no limit), ``invoke`` the InvokeCommand parameters every batch shares.
    queued: bool = False
    waves: tuple[int, ...] = ()
    error_budget: int | None = None
    invoke: dict[str, Any] = field(default_factory=dict)
    rate_control: dict[str, Any] = field(default_factory=dict)  # as the request sent it

    @property
    def key(self) -> str:
        return request_key(self.request_id)

    @property
    def settled(self) -> bool:
        return all(b.resolved for b in self.batches)

    @property
    def invoked(self) -> list[tuple[int, Batch]]:
        return [(n, b) for n, b in enumerate(self.batches) if b.state == INVOKED]

    def with_batch(self, index: int, batch: Batch) -> RequestRecord:
        batches = list(self.batches)
        batches[index] = batch
        return replace(self, batches=tuple(batches))

    def to_json(self) -> str:
        data = asdict(self)
        data["followup"] = json.loads(self.followup.to_json())
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> RequestRecord:
        data: dict[str, Any] = json.loads(text)
        data["followup"] = FollowUp.from_json(json.dumps(data["followup"]))
        data["batches"] = tuple(Batch(**{**b, "instances": tuple(b["instances"])})
                                for b in data["batches"])
        data["skipped"] = tuple(tuple(s) for s in data.get("skipped", ()))
        data["targets"] = tuple(data.get("targets", ()))
        data["waves"] = tuple(data.get("waves", ()))
        return cls(**data)

    def wave_of(self, index: int) -> int:
        return self.waves[index] if index < len(self.waves) else 0

    @property
    def wave_count(self) -> int:
        return max(self.waves, default=0) + 1


def fingerprint(request: CommandRequest) -> str:
    """What makes two deliveries the same request (the fields that change what runs where).
    A selector's request is the same request whatever its selector resolves to now: its
    selector counts, not the instances (the record's ``targets`` hold those)."""
    parts: tuple[Any, ...] = (
        () if request.selector else request.instance_ids, request.type, request.content_b64,
        request.command_id, request.name, request.working_dir, request.timeout,
        request.username, request.parameters, request.repeat_mode, request.frequency,
        request.region, request.skip_ineligible, request.output, request.notify)
    if request.selector:  # added last: older records keep their fingerprint
        parts += (request.tags, request.resource_group_id)
    if request.rate_control is not None:  # added last too
        parts += (request.rate_control,)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def selection(request: CommandRequest) -> dict[str, Any]:
    """The record's ``selector`` and ``targets`` for ``request`` (none for listed instances)."""
    if not request.selector:
        return {}
    selector: dict[str, Any] = {}
    if request.tags:
        selector["Tags"] = [{"Key": key, "Value": value} for key, value in request.tags]
    if request.resource_group_id:
        selector["ResourceGroupId"] = request.resource_group_id
    return {"selector": selector, "targets": request.instance_ids}


def content_sha256(content_b64: str) -> str:
    import base64

    return hashlib.sha256(base64.b64decode(content_b64)).hexdigest() if content_b64 else ""


def request_key(request_id: str) -> str:
    return f"{REQUESTS_PREFIX}/{request_id}.json"


# --- markers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Marker:
    """An open marker, parsed from its key ``invocations/open/{RequestId}/{slot}.{due}.{tries}``."""

    request_id: str
    slot: str  # "submit", or the batch number
    due: int
    tries: int = 0
    key: str = field(default="", compare=False)

    @classmethod
    def parse(cls, key: str) -> Marker | None:
        rest = key[len(OPEN_PREFIX) + 1:] if key.startswith(OPEN_PREFIX + "/") else ""
        request_id, _, name = rest.partition("/")
        slot, _, times = name.partition(".")
        due, _, tries = times.partition(".")
        if not request_id or not slot or not due.isdigit() or not tries.isdigit():
            return None
        return cls(request_id, slot, int(due), int(tries), key)

    @property
    def batch(self) -> int | None:
        return int(self.slot) if self.slot.isdigit() else None


def marker_key(request_id: str, slot: str | int, due: float, tries: int = 0) -> str:
    return f"{OPEN_PREFIX}/{request_id}/{slot}.{math.ceil(max(due, 0))}.{tries}"


def collect_due(deadline: float) -> float:
    """When a batch whose follow-ups stop at ``deadline`` is surely no longer followed up."""
    return deadline + COLLECT_SLACK


def open_markers(results: Results, request_id: str) -> list[Marker]:
    """Every open marker of the request (one ListObjects)."""
    keys, _ = results.list_page(f"{OPEN_PREFIX}/{request_id}/")
    return [m for m in map(Marker.parse, keys) if m is not None]


def batch_open(results: Results, request_id: str) -> bool:
    """Is a batch marker of the request still there? Usually one ListObjects of one key:
    OSS lists keys in lexicographic order ("Objects in a bucket are sorted in lexicographical
    order by default", https://www.alibabacloud.com/help/doc-detail/31860.html), and a
    batch's slot is its number, whose digits sort before the letters of the other slots
    (``advance``, ``submit``) — so the first key is a batch marker if any is left. A closer
    asks this once per batch; a request of 100 batches listed up to 100 markers each time
    (3 ms of oss2's XML parsing, and as much of the local OSS's rendering). A first key that
    is not a marker at all is looked past with the whole listing."""
    keys, _ = results.list_page(f"{OPEN_PREFIX}/{request_id}/", max_keys=1)
    first = Marker.parse(keys[0]) if keys else None
    if keys and first is None:
        return any(m.batch is not None for m in open_markers(results, request_id))
    return first is not None and first.batch is not None


def put_marker(results: Results, key: str) -> None:
    results.put(key, b"", "application/octet-stream")


# --- the record -------------------------------------------------------------------------------

def claim_request(results: Results, intent: RequestRecord) -> tuple[RequestRecord, bool]:
    """Write ``intent`` unless a delivery of the same request wrote its record before:
    (the record in force, whether it is this one)."""
    if results.claim(intent.key, intent.to_json().encode(), "application/json"):
        return intent, True
    existing = read_request(results, intent.request_id)
    return (existing, False) if existing is not None else (intent, False)


def read_request(results: Results, request_id: str) -> RequestRecord | None:
    raw = results.get(request_key(request_id))
    return RequestRecord.from_json(raw) if raw is not None else None


def save_request(results: Results, record: RequestRecord) -> None:
    results.put(record.key, record.to_json().encode(), "application/json")


# --- a fanned-out request's batches, one object each ----------------------------------------

def batch_key(request_id: str, index: int) -> str:
    return f"{REQUESTS_PREFIX}/{request_id}/batch-{index}.json"


def wave_claim_key(request_id: str, wave: int) -> str:
    return f"{REQUESTS_PREFIX}/{request_id}/wave-{wave}"


def finish_claim_key(request_id: str) -> str:
    """Claimed by the closer that writes the request's end (``shared.rollout.advance``)."""
    return f"{REQUESTS_PREFIX}/{request_id}/finish"


def save_batch(results: Results, request_id: str, index: int, batch: Batch) -> None:
    results.put(batch_key(request_id, index), json.dumps(asdict(batch), sort_keys=True).encode(),
                "application/json")


def load_request(results: Results, request_id: str) -> RequestRecord | None:
    """The request record with every batch as it stands: for a fanned-out request, each
    batch's own object (one ListObjects, then the objects side by side) over the intent."""
    record = read_request(results, request_id)
    if record is None or not record.queued:
        return record
    from shared.parallel import run_each

    keys = set(results.keys(f"{REQUESTS_PREFIX}/{request_id}/"))
    present = [n for n in range(len(record.batches)) if batch_key(request_id, n) in keys]
    found = run_each(lambda n: results.get(batch_key(request_id, n)), present)
    batches = list(record.batches)
    for index, raw in zip(present, found, strict=True):
        if raw is not None:
            batches[index] = batch_from(raw)
    return replace(record, batches=tuple(batches))


def batch_from(raw: bytes) -> Batch:
    data = json.loads(raw)
    return Batch(**{**data, "instances": tuple(data["instances"])})


# --- the collector's end of a batch -----------------------------------------------------------

FINISHED_INVOCATION = ("Success", "Failed", "PartialFailed", "Stopped")


def delete_command(ecs: CloudAssistant, command_id: str) -> None:
    """DeleteCommand; a command already gone (another collector, the reconciler) is fine."""
    try:
        ecs.delete_command(command_id)
    except CloudCallError as exc:
        if exc.error_code != "InvalidCmdId.NotFound":
            raise


def adoption_deadline(record: RequestRecord, invocation: dict[str, Any]) -> float:
    """The collector's deadline for an invocation found late: the request's, or its own
    creation time plus its Timeout and the margin, whichever is later."""
    from datetime import datetime

    created = str(invocation.get("CreationTime") or "")
    try:
        start = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        start = record.created_at
    timeout = int(invocation.get("Timeout") or 0) or 60
    return max(record.followup.deadline, start + timeout + DEADLINE_MARGIN)
