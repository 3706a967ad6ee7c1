"""What the dashboard shows: recent requests and invocations, read as a client would.

Everything comes through the official SDKs with the owner's keys — the ``shared.clients``
``Results`` (oss2) and ``CloudAssistant`` (aliyun-python-sdk-ecs) the CLI uses — never from
the emulators' SQLite state: the dashboard sees what a tool pointed at Alibaba Cloud would
see, no more, and every call it makes passes the emulators' signature and RAM checks like any
other. It is a local tool with the account owner's keys, as the CLI is; the functions' roles
are not involved.

* invocations: the deployment's records ``invocations/{InvokeId}.json`` (ListObjects, newest
  first by ``LastModified``), each one's ``summary.json`` (status, counts); one still without a
  summary is looked up in Cloud Assistant (``DescribeInvocations``: its status and each
  instance's), as it runs;
* requests: the request records ``invocations/requests/{RequestId}.json`` with their batches'
  InvokeIds; the request's own summary (``{prefix}/requests/{RequestId}/summary.json``) when
  it exists, else the sum of its invocations'.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.config import RECORDS_PREFIX
from shared.errors import CloudCallError
from shared.followup import FollowUp
from shared.ledger import FINISHED_INVOCATION, REQUESTS_PREFIX, RequestRecord
from shared.parallel import run_each
from shared.results import overall_status, summary_key

if TYPE_CHECKING:
    from shared.clients import Clients

LIMIT = 30  # of each kind, newest first
RUNNING = "Running"


@dataclass
class Row:
    """One request or invocation as the dashboard lists it."""

    id: str
    source: str
    name: str
    status: str
    counts: dict[str, int]
    created: float  # Unix seconds
    running: bool
    report: str = ""  # object key of its report.html, "" while there is none
    summary: str = ""  # object key of its summary.json
    related: list[str] = field(default_factory=list)  # its request / its invocations


def request_summary_key(prefix: str, request_id: str) -> str:
    """A request's own summary (issue 14's layout: ``{prefix}/requests/{RequestId}/``)."""
    return f"{prefix}/requests/{request_id}/summary.json"


def newest(clients: Clients, prefix: str, limit: int) -> list[str]:
    """Keys of the newest ``limit`` JSON records directly under ``prefix``."""
    entries = [(t, k) for k, t in clients.results.entries(prefix)
               if k.endswith(".json") and "/" not in k[len(prefix):]]
    return [k for _, k in sorted(entries, reverse=True)[:limit]]


def invocations(clients: Clients, limit: int = LIMIT) -> list[Row]:
    keys = newest(clients, f"{RECORDS_PREFIX}/t-", limit)
    return [row for row in run_each(functools.partial(_invocation, clients), keys) if row]


def _invocation(clients: Clients, key: str) -> Row | None:
    raw = clients.results.get(key)
    if raw is None:
        return None
    record = FollowUp.from_json(raw)
    bucket = clients.results.named(record.bucket)
    where = summary_key(record.prefix, record.invoke_id)
    found = bucket.get(where)
    row = Row(record.invoke_id, record.source, record.command_name or record.command_id,
              RUNNING, {}, record.submitted_at, True, related=[record.request_id])
    if found is not None:
        summary = json.loads(found)
        row.status = str(summary.get("InvocationStatus") or summary.get("Status") or "")
        row.counts = dict(summary.get("Counts") or {})
        row.running = row.status in (RUNNING, "Pending", "Scheduled")  # periodic: goes on
        row.summary = where
        report = where.rsplit("/", 1)[0] + "/report.html"
        row.report = report if bucket.exists(report) else ""
        return row
    try:  # not summarized yet: Cloud Assistant knows how far it got
        live = clients.ecs_in(record.region).invocation(record.invoke_id)
    except CloudCallError as exc:
        row.status = f"Unknown ({exc.error_code})"
        return row
    row.status = str(live.get("InvocationStatus") or RUNNING)
    row.counts = dict(Counter(
        str(i.get("InvocationStatus")) for i in
        (live.get("InvokeInstances") or {}).get("InvokeInstance") or []))
    if row.status in FINISHED_INVOCATION:
        row.status = f"{row.status}, collecting"
    return row


def requests(clients: Clients, by_invoke_id: dict[str, Row], limit: int = LIMIT) -> list[Row]:
    keys = newest(clients, f"{REQUESTS_PREFIX}/", limit)
    return [row for row in run_each(functools.partial(_request, clients, by_invoke_id), keys)
            if row]


def _request(clients: Clients, by_invoke_id: dict[str, Row], key: str) -> Row | None:
    raw = clients.results.get(key)
    if raw is None:
        return None
    record = RequestRecord.from_json(raw)
    template = record.followup
    invoke_ids = [b.invoke_id for b in record.batches if b.invoke_id]
    row = Row(record.request_id, template.source, record.command_name, RUNNING, {},
              record.created_at, True, related=invoke_ids)
    bucket = clients.results.named(template.bucket)
    where = request_summary_key(template.prefix, record.request_id)
    found = bucket.get(where)
    if found is not None:
        summary = json.loads(found)
        row.status, row.counts = str(summary.get("Status") or ""), dict(summary.get("Counts") or {})
        row.running, row.summary = False, where
        # a fanned-out request's batches keep their InvokeIds in objects of their own; its
        # summary lists them all
        row.related = [str(i) for i in summary.get("InvokeIds") or invoke_ids]
        report = where.rsplit("/", 1)[0] + "/report.html"
        row.report = report if bucket.exists(report) else ""
        return row
    parts = [by_invoke_id.get(i) for i in invoke_ids]
    counts: Counter[str] = Counter()
    for part in parts:
        counts.update(part.counts if part else {})
    row.counts = dict(counts)
    pending = [b for b in record.batches if not b.resolved]
    if invoke_ids and not pending and all(p and not p.running for p in parts):
        row.status = overall_status([s for s, n in counts.items() if n and s != "Skipped"])
        row.running = False
    elif not invoke_ids and record.settled:
        row.status, row.running = "NotStarted", False
    return row


def age(created: float, now: float | None = None) -> str:
    seconds = max(0, int((now if now is not None else time.time()) - created))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def overview(clients: Clients, limit: int = LIMIT) -> dict[str, Any]:
    """Recent invocations and requests, and whether anything still runs."""
    rows = invocations(clients, limit)
    asked = requests(clients, {r.id: r for r in rows}, limit)
    return {"invocations": rows, "requests": asked,
            "running": any(r.running for r in rows + asked)}
