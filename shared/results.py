"""The results layout in OSS — a contract with users and other tools.

```
{prefix}/{InvokeId}/summary.json                 overall status, counts, per-instance index,
                                                 and the notification's progress (Notify only)
{prefix}/{InvokeId}/{InstanceId}/output.txt      decoded output (UTF-8, undecodable bytes replaced)
{prefix}/{InvokeId}/{InstanceId}/result.json     status, exit code, error, times, Dropped
{prefix}/{InvokeId}/{InstanceId}/runs/{n}/…      each run of a periodic invocation
```

Documents are built only from what Cloud Assistant returned and the invocation's record, so
writing them again for a redelivered follow-up produces the same bytes. The one part that
changes later is ``summary.json``'s ``Notification`` (``shared.notify``: each attempt records
its outcome there; nothing else is rewritten).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from typing import Any, NamedTuple

from shared.followup import InvocationRecord

TERMINAL = frozenset({"Success", "Failed", "Timeout", "Error", "Invalid", "Aborted",
                      "Cancelled", "Terminated"})
FAILED = frozenset({"Failed", "Timeout", "Error", "Invalid", "Aborted"})
STOPPED = frozenset({"Cancelled", "Terminated"})
COLLECTOR_TIMEOUT = "CollectorTimeout"  # our own status: still running past the deadline
SKIPPED = "Skipped"  # our own status: left out by pre-flight (OnIneligible: Skip)


def invoke_prefix(prefix: str, invoke_id: str) -> str:
    return f"{prefix}/{invoke_id}/"


def instance_prefix(prefix: str, invoke_id: str, instance_id: str) -> str:
    return f"{prefix}/{invoke_id}/{instance_id}/"


def run_prefix(prefix: str, invoke_id: str, instance_id: str, run: int) -> str:
    """Where run ``run`` of a periodic invocation is kept (the latest is also at the usual keys)."""
    return f"{prefix}/{invoke_id}/{instance_id}/runs/{run}/"


def output_key(prefix: str, invoke_id: str, instance_id: str) -> str:
    return instance_prefix(prefix, invoke_id, instance_id) + "output.txt"


def result_key(prefix: str, invoke_id: str, instance_id: str) -> str:
    return instance_prefix(prefix, invoke_id, instance_id) + "result.json"


def summary_key(prefix: str, invoke_id: str) -> str:
    return f"{prefix}/{invoke_id}/summary.json"


def decode_output(encoded: str) -> tuple[str, int]:
    """Cloud Assistant's Base64 ``Output`` as text, and the number of raw bytes."""
    try:
        raw = base64.b64decode(encoded or "")
    except (binascii.Error, ValueError):
        raw = (encoded or "").encode()
    return raw.decode("utf-8", errors="replace"), len(raw)


class Put(NamedTuple):
    """One object to write: its key, bytes and ``Content-Type``."""

    key: str
    data: bytes
    content_type: str


def dumps(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def result_document(record: dict[str, Any], invocation: InvocationRecord,
                    output_bytes: int) -> dict[str, Any]:
    """``result.json`` for one terminal per-instance record of DescribeInvocationResults."""
    dropped = int(record.get("Dropped") or 0)
    return {
        "InvokeId": invocation.invoke_id,
        "CommandId": invocation.command_id,
        "InstanceId": record["InstanceId"],
        "Status": record["InvocationStatus"],
        "ExitCode": record.get("ExitCode"),
        "ErrorCode": record.get("ErrorCode") or "",
        "ErrorInfo": record.get("ErrorInfo") or "",
        "StartTime": record.get("StartTime") or "",
        "FinishedTime": record.get("FinishedTime") or "",
        "OutputBytes": output_bytes,
        "Dropped": dropped,
        "Truncated": dropped > 0,
        "RequestId": invocation.request_id,
        "Source": invocation.source,
    }


def collector_timeout_document(instance_id: str, invocation: InvocationRecord) -> dict[str, Any]:
    """``result.json`` for an instance still not finished when the collector's deadline passed."""
    return {
        "InvokeId": invocation.invoke_id, "CommandId": invocation.command_id,
        "InstanceId": instance_id, "Status": COLLECTOR_TIMEOUT, "ExitCode": None,
        "ErrorCode": COLLECTOR_TIMEOUT,
        "ErrorInfo": "the collector stopped waiting: the instance had not finished by the "
                     "command's Timeout plus a margin; check it with DescribeInvocationResults",
        "StartTime": "", "FinishedTime": "", "OutputBytes": 0, "Dropped": 0, "Truncated": False,
        "RequestId": invocation.request_id, "Source": invocation.source,
    }


def skipped_document(instance_id: str, reason: str, message: str,
                     invocation: InvocationRecord) -> dict[str, Any]:
    """``result.json`` for an instance pre-flight left out (it never ran)."""
    return {
        "InvokeId": invocation.invoke_id, "CommandId": invocation.command_id,
        "InstanceId": instance_id, "Status": SKIPPED, "ExitCode": None, "ErrorCode": reason,
        "ErrorInfo": message, "StartTime": "", "FinishedTime": "", "OutputBytes": 0,
        "Dropped": 0, "Truncated": False, "RequestId": invocation.request_id,
        "Source": invocation.source,
    }


def overall_status(statuses: list[str]) -> str:
    """Aggregate finished per-instance statuses as Cloud Assistant documents it.

    DescribeInvocations' ``InvocationStatus`` (https://help.aliyun.com/zh/ecs/
    developer-reference/api-ecs-2014-05-26-describeinvocations): ``Success`` when every
    instance is Success or stopped (Cancelled, Terminated) and at least one is Success;
    ``Failed`` when every instance failed (Failed, Timeout, Error, Invalid, Aborted — and our
    ``CollectorTimeout``) or was stopped; ``Stopped`` when all were stopped; ``PartialFailed``
    when some succeeded and some failed. ``Skipped`` instances never ran and are left out by
    the caller.
    """
    succeeded = "Success" in statuses
    failed = any(s in FAILED or s == COLLECTOR_TIMEOUT for s in statuses)
    if succeeded and failed:
        return "PartialFailed"
    if succeeded:
        return "Success"
    return "Stopped" if statuses and all(s in STOPPED for s in statuses) else "Failed"


# ``Notification.Status``: not tried yet, failed and tried again at NextAttemptAt, delivered,
# or stopped for good (retries over, the target refused, or an attempt interrupted).
PENDING, RETRYING, SENT, GAVE_UP = "Pending", "Retrying", "Sent", "GaveUp"


def notification_document(status: str = PENDING, attempts: int = 0, last_attempt_at: str = "",
                          last_error: str = "", next_attempt_at: str = "") -> dict[str, Any]:
    """``summary.json``'s ``Notification``: where the completion notification stands."""
    return {"Status": status, "Attempts": attempts, "LastAttemptAt": last_attempt_at,
            "LastError": last_error, "NextAttemptAt": next_attempt_at}


def summary_document(invocation: InvocationRecord, results: dict[str, dict[str, Any]],
                     notification: dict[str, Any] | None = None) -> dict[str, Any]:
    """``summary.json``: overall status, counts per status and an index of every instance
    (plus ``notification``, the ``Notification`` part, when the request asked for one)."""
    statuses = [doc["Status"] for doc in results.values() if doc["Status"] != SKIPPED]
    counts = Counter(doc["Status"] for doc in results.values())
    if invocation.skipped_count > len(invocation.skipped):  # the list was cut to fit a message
        counts[SKIPPED] += invocation.skipped_count - len(invocation.skipped)
    return {
        "InvokeId": invocation.invoke_id,
        "CommandId": invocation.command_id,
        "RegionId": invocation.region,
        "Status": overall_status(statuses),
        "Counts": dict(sorted(counts.items())),
        "InstanceCount": sum(counts.values()),
        # Cloud Assistant's own times, not the submitter's or the collector's clock: a duplicate
        # delivery of the request, or of a follow-up, rewrites the same bytes.
        "StartedAt": min((doc.get("StartTime") or "" for doc in results.values()
                          if doc.get("StartTime")), default=""),
        "FinishedAt": max((doc.get("FinishedTime") or "" for doc in results.values()),
                          default=""),
        "RequestId": invocation.request_id,
        "Source": invocation.source,
        "Instances": {
            instance_id: {
                "Status": doc["Status"], "ExitCode": doc["ExitCode"],
                "Truncated": doc["Truncated"],
                "Output": output_key(invocation.prefix, invocation.invoke_id, instance_id),
                "Result": result_key(invocation.prefix, invocation.invoke_id, instance_id),
            }
            for instance_id, doc in sorted(results.items())
        },
        "Truncated": sorted(i for i, doc in results.items() if doc["Truncated"]),
    } | ({"Notification": notification} if notification is not None else {})
