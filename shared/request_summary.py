"""The request summary: ``{prefix}/requests/{RequestId}/summary.json``, one per request.

In the shape of an invocation's ``summary.json`` (``shared.results.summary_document``), over
every batch and wave of the request: ``RequestId``, ``InvokeIds`` (all of them), ``Counts`` per
status (``Skipped`` and ``NotStarted`` included), one ``Status`` aggregated as Cloud Assistant
aggregates (``shared.results.overall_status``; ``Skipped`` and ``NotStarted`` never ran and are
left out), the times (Cloud Assistant's), the targets, and the per-instance index pointing at
each instance's objects. An instance that never started (its batch refused for good, or the
``MaxErrors`` budget spent before its wave) has its own
``{prefix}/requests/{RequestId}/{InstanceId}/result.json`` with ``Status: NotStarted`` and the
reason. Built only from stored documents and the request record, so writing it again gives the
same bytes (its ``Notification`` part excepted, which is the notification job's).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from shared.followup import InvocationRecord
from shared.ratecontrol import NOT_STARTED
from shared.results import SKIPPED, overall_status

REQUESTS = "requests"


def requests_prefix(prefix: str) -> str:
    """Where request summaries live under a results prefix: ``{prefix}/requests``."""
    return f"{prefix}/{REQUESTS}"


def request_summary_key(prefix: str, request_id: str) -> str:
    return f"{requests_prefix(prefix)}/{request_id}/summary.json"


def not_started_key(prefix: str, request_id: str, instance_id: str) -> str:
    return f"{requests_prefix(prefix)}/{request_id}/{instance_id}/result.json"


def not_started_document(instance_id: str, reason: str, message: str, *, request_id: str,
                         command_id: str, source: str) -> dict[str, Any]:
    """``result.json`` of an instance the request never started (and why)."""
    return {
        "InvokeId": "", "CommandId": command_id, "InstanceId": instance_id,
        "Status": NOT_STARTED, "ExitCode": None, "ErrorCode": reason, "ErrorInfo": message,
        "StartTime": "", "FinishedTime": "", "OutputBytes": 0, "Dropped": 0, "Truncated": False,
        "RequestId": request_id, "Source": source,
    }


def request_summary(record: InvocationRecord, *, invoke_ids: list[str],
                    summaries: list[dict[str, Any]], not_started: dict[str, tuple[str, str]],
                    targets: int, rate_control: dict[str, Any] | None = None,
                    waves: int = 1, notification: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The request summary from its invocations' summaries (in batch order) and the
    instances never started (instance -> (reason, message)). ``record`` is any batch's
    invocation record (bucket, prefix, request id, command, region, source)."""
    instances: dict[str, dict[str, Any]] = {}
    truncated: list[str] = []
    counts: Counter[str] = Counter()
    for summary in summaries:
        for instance_id, entry in summary.get("Instances", {}).items():
            instances[instance_id] = {**entry, "InvokeId": summary.get("InvokeId", "")}
        truncated += summary.get("Truncated", [])
        counts.update(summary.get("Counts", {}))
    for instance_id, (reason, _) in not_started.items():
        instances[instance_id] = {
            "Status": NOT_STARTED, "ExitCode": None, "Truncated": False, "Reason": reason,
            "Output": "", "Result": not_started_key(record.prefix, record.request_id,
                                                    instance_id), "InvokeId": ""}
        counts[NOT_STARTED] += 1
    statuses = [s for s, n in counts.items() if n and s not in (SKIPPED, NOT_STARTED)]
    body: dict[str, Any] = {
        "RequestId": record.request_id,
        "InvokeIds": list(invoke_ids),
        "CommandId": record.command_id,
        "RegionId": record.region,
        "Status": overall_status(statuses),
        "Counts": dict(sorted(counts.items())),
        "InstanceCount": sum(counts.values()),
        "Targets": targets,
        "Batches": len(invoke_ids),
        "Waves": waves,
        "StartedAt": min((s.get("StartedAt") or "" for s in summaries if s.get("StartedAt")),
                         default=""),
        "FinishedAt": max((s.get("FinishedAt") or "" for s in summaries), default=""),
        "Source": record.source,
        "Instances": dict(sorted(instances.items())),
        "Truncated": sorted(truncated),
    }
    if rate_control:
        body["RateControl"] = rate_control
    if notification is not None:
        body["Notification"] = notification
    return body
