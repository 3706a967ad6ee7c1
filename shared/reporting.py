"""Store ``report.html`` beside a ``summary.json`` (``shared.report`` renders it).

Called right before the summary is written, so a reader that sees ``summary.json`` finds the
report too (the same order as ``output.txt`` before ``result.json``). The renderer is imported
here, when a summary is written, never when the collector starts.

Failure tails come from what the caller already holds: the collector passes the per-instance
records of DescribeInvocationResults it just stored (their Base64 ``Output``), and only the
first ``DETAILED_FAILURES`` failures' outputs are decoded. A caller without outputs (a
request's summary, written from its batches' summaries) gets them read back from those
failures' ``output.txt`` objects — at most ``DETAILED_FAILURES`` GETs, side by side.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.clients import Results
    from shared.followup import InvocationRecord

CONTENT_TYPE = "text/html; charset=utf-8"


def write_report(bucket: Results, summary_key: str, summary: Mapping[str, Any], *,
                 results: Mapping[str, Mapping[str, Any]] | None = None,
                 outputs: Mapping[str, str] | None = None,
                 command: Mapping[str, str] | None = None) -> str:
    """Render ``summary`` and store it as ``report.html`` beside ``summary_key``; its key.

    ``results``: the per-instance ``result.json`` documents by instance id (durations, error
    texts); ``outputs``: the decoded output of (at least the first) failed instances by id —
    None reads the first failures' ``output.txt`` back; ``command``: ``Name``, ``Type``,
    ``Content`` (what the caller knows of the command).
    """
    from shared import report

    failures = [i for i, e in sorted((summary.get("Instances") or {}).items())
                if report.failed(str(e.get("Status")))][:report.DETAILED_FAILURES]
    if outputs is None:
        outputs = _read_outputs(bucket, summary, failures)
    texts = {i: outputs.get(i) for i in failures}  # each decoded once, failures only
    tails = {i: report.tail(text) for i, text in texts.items() if text}
    key = report.report_key(summary_key)
    page = report.render(summary, key=key, results=results, tails=tails, command=command)
    bucket.put(key, page, CONTENT_TYPE)
    return key


def report_invocation(bucket: Results, summary_key: str, summary: Mapping[str, Any],
                      documents: Mapping[str, Mapping[str, Any]],
                      raw: Mapping[str, Mapping[str, Any]],
                      invocation: InvocationRecord) -> str:
    """The collector's one call: ``documents`` are the ``result.json`` documents, ``raw`` the
    DescribeInvocationResults records (Base64 ``Output``) it stored them from."""
    return write_report(bucket, summary_key, summary, results=documents, outputs=_Decoded(raw),
                        command=command_of(bucket, invocation))


def decoded_outputs(raw: Mapping[str, Mapping[str, Any]]) -> Mapping[str, str]:
    """The decoded output of each instance of ``raw`` (DescribeInvocationResults records),
    decoded only when asked for (the report asks for failures only)."""
    return _Decoded(raw)


def command_of(bucket: Results, invocation: InvocationRecord) -> dict[str, str]:
    """What the invocation's record says of its command. A follow-up that does not carry it
    (sent before records did) is completed from the stored record (``shared.record``, cached,
    in the deployment's bucket — the only one results may go to), so every rewrite of the
    report shows the same command whichever follow-up finished the invocation."""
    if not invocation.command_name:
        from shared.record import read_record

        invocation = read_record(bucket, invocation.invoke_id) or invocation
    return {"Name": invocation.command_name, "Type": invocation.command_type,
            "Content": invocation.command_excerpt}


class _Decoded(Mapping[str, str]):
    """The decoded output of an instance, decoded only when asked for (failures only)."""

    def __init__(self, raw: Mapping[str, Mapping[str, Any]]) -> None:
        self._raw = raw

    def __getitem__(self, instance_id: str) -> str:
        from shared.results import decode_output

        return decode_output(str(self._raw[instance_id].get("Output") or ""))[0]

    def __iter__(self) -> Any:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _read_outputs(bucket: Results, summary: Mapping[str, Any],
                  instance_ids: list[str]) -> dict[str, str]:
    from shared.parallel import run_all

    instances = summary.get("Instances") or {}
    keys = [str(instances[i].get("Output") or "") for i in instance_ids]
    found = run_all([functools.partial(bucket.get, k) for k in keys if k])
    texts = iter(found)
    return {i: (next(texts) or b"").decode("utf-8", errors="replace")
            for i, k in zip(instance_ids, keys, strict=True) if k}
