"""``invocations/{InvokeId}.json``: the deployment's record of each invocation it made.

Written by dispatch with each invocation (in the deployment's bucket, wherever the results
go), read by the collector when a TaskCompleted event arrives: the event carries only Cloud
Assistant's ids, and the record says where to store the result, which request it belongs to
and whom to notify — and tells assistflow's invocations apart from anyone else's in the
account. A record is the invocation's first follow-up, byte for byte (``FollowUp.to_json``),
and never changes, so a function instance caches the ones it read.

Beside each record, two markers claimed at most once (``Results.claim``):
``{InvokeId}.finishing`` (a TaskCompleted handler took on finishing the invocation) and
``{InvokeId}.notified`` (the notification job's claim: the attempt under way and how it ended,
``shared.notify``).
"""

from __future__ import annotations

from collections import OrderedDict

from shared.clients import Results
from shared.config import RECORDS_PREFIX
from shared.followup import FollowUp, InvocationRecord

CACHED_RECORDS = 1024

_cache: OrderedDict[str, InvocationRecord] = OrderedDict()


def record_key(invoke_id: str) -> str:
    return f"{RECORDS_PREFIX}/{invoke_id}.json"


def finishing_key(invoke_id: str) -> str:
    """Marker (beside the record) that a TaskCompleted handler took on finishing ``invoke_id``."""
    return f"{RECORDS_PREFIX}/{invoke_id}.finishing"


def notified_key(invoke_id: str) -> str:
    """Marker (beside the record): the notification attempt of ``invoke_id`` under way, or how
    the last one ended (``shared.notify``)."""
    return f"{RECORDS_PREFIX}/{invoke_id}.notified"


def write_record(results: Results, first: FollowUp) -> None:
    """Record the invocation of ``first``, the first follow-up dispatch queues for it."""
    results.put(record_key(first.invoke_id), first.to_json().encode(), "application/json")


def read_record(results: Results, invoke_id: str) -> InvocationRecord | None:
    """The record of ``invoke_id`` (cached per function instance), None if assistflow made no
    such invocation."""
    if invoke_id in _cache:
        _cache.move_to_end(invoke_id)
        return _cache[invoke_id]
    raw = results.get(record_key(invoke_id)) if invoke_id else None
    if raw is None:
        return None
    _cache[invoke_id] = record = FollowUp.from_json(raw)
    while len(_cache) > CACHED_RECORDS:
        _cache.popitem(last=False)
    return record
