"""``invocations/{InvokeId}.json``: the deployment's record of each invocation it made.

Written by dispatch with each invocation (in the deployment's bucket, wherever the results
go), read by the collector when a TaskCompleted event arrives: the event carries only Cloud
Assistant's ids, and the record says where to store the result, which request it belongs to
and whom to notify — and tells assistflow's invocations apart from anyone else's in the
account. A record is the invocation's first follow-up, byte for byte (``FollowUp.to_json``),
and never changes, so a function instance caches the ones it read — and remembers the
commands whose records said that no event of theirs is needed (``events_unused``: a fan-out's
own command, every batch collected by follow-ups), so the TaskCompleted events of that
request's other batches are let go without reading their records: one read per function
instance for a 10,000-instance request, not one per batch.

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
_followed: OrderedDict[str, None] = OrderedDict()  # commands whose events are not needed


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
    if record.events_unused and record.command_id:
        _followed[record.command_id] = None
        while len(_followed) > CACHED_RECORDS:
            _followed.popitem(last=False)
    return record


def followed_command(command_id: str) -> bool:
    """Is ``command_id`` one whose every invocation the follow-ups collect (a record this
    function instance read said so)? Then its TaskCompleted events need no record."""
    return bool(command_id) and command_id in _followed
