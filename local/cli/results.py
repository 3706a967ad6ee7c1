"""``assistflow results INVOKE_ID|REQUEST_ID``: what the collector stored in OSS, and how to show it.

A RequestId (``r-…``) reads the request summary (``{prefix}/requests/{RequestId}/summary.json``):
every batch and wave of the request, and the instances it never started.

The layout is ``shared.results``' contract: ``{prefix}/{InvokeId}/summary.json`` once every
instance finished, ``{prefix}/{InvokeId}/{InstanceId}/result.json`` and ``output.txt`` for each
instance as it finishes. ``submit --wait`` ends with the same per-instance table.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import IO, Any

from local.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    CliError,
    Target,
    cloud_error,
    emit_json,
    printable,
    say,
    table,
    target,
)
from shared import results as layout
from shared.errors import AssistflowError

FAILED_OUTPUT_LINES = 20  # of each failed instance's output, the last ones
FAILED_OUTPUT_INSTANCES = 10


class ResultsReader:
    """What the collector stored in one results bucket under one prefix (through
    ``shared.clients.Results``, like every other OSS call)."""

    def __init__(self, where: Target, bucket: str = "", prefix: str = "") -> None:
        if not bucket:
            where.need_results_bucket()
        self.where = where
        self.bucket_name = bucket or where.settings.results_bucket
        self.prefix = (prefix or where.settings.results_prefix).strip("/")
        self._results = where.clients.results.named(self.bucket_name)

    def read(self, key: str) -> bytes | None:
        """The object's bytes, None if there is none."""
        try:
            return self._results.get(key)
        except AssistflowError as exc:
            raise cloud_error(exc) from None

    def exists(self, key: str) -> bool:
        try:
            return self._results.exists(key)
        except AssistflowError as exc:
            raise cloud_error(exc) from None

    def presigned(self, key: str, expires: int, domain: str = "") -> str:
        try:
            return self._results.sign_url(key, expires, domain)
        except AssistflowError as exc:
            raise cloud_error(exc) from None

    def json(self, key: str) -> dict[str, Any] | None:
        raw = self.read(key)
        return None if raw is None else dict(json.loads(raw))

    def summary(self, invoke_id: str) -> dict[str, Any] | None:
        return self.json(layout.summary_key(self.prefix, invoke_id))

    def result(self, invoke_id: str, instance_id: str) -> dict[str, Any] | None:
        return self.json(layout.result_key(self.prefix, invoke_id, instance_id))

    def output(self, invoke_id: str, instance_id: str) -> str | None:
        raw = self.read(layout.output_key(self.prefix, invoke_id, instance_id))
        return None if raw is None else raw.decode("utf-8", errors="replace")

    def collected(self, invoke_id: str) -> list[str]:
        """Instances whose result.json is already stored (before the summary exists)."""
        base = layout.invoke_prefix(self.prefix, invoke_id)
        try:
            keys = self._results.keys(base)
        except AssistflowError as exc:
            raise cloud_error(exc) from None
        return sorted(key[len(base):-len("/result.json")] for key in keys
                      if key.endswith("/result.json") and "/runs/" not in key)

    def location(self, invoke_id: str) -> str:
        return f"oss://{self.bucket_name}/{layout.invoke_prefix(self.prefix, invoke_id)}"

    def request_summary(self, request_id: str) -> dict[str, Any] | None:
        """``{prefix}/requests/{RequestId}/summary.json`` (``shared.request_summary``)."""
        from shared.request_summary import request_summary_key

        return self.json(request_summary_key(self.prefix, request_id))

    def request_location(self, request_id: str) -> str:
        from shared.request_summary import request_summary_key

        return f"oss://{self.bucket_name}/{request_summary_key(self.prefix, request_id)}"


def duration(result: dict[str, Any] | None) -> float | None:
    """Seconds from StartTime to FinishedTime (ISO 8601) of a result.json, if both are known."""
    if not result or not result.get("StartTime") or not result.get("FinishedTime"):
        return None
    try:
        start = datetime.fromisoformat(str(result["StartTime"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(result["FinishedTime"]).replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (end - start).total_seconds())


def instance_rows(reader: ResultsReader, summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per instance of every summary, with the duration from its result.json."""
    wanted = [(invoke_id, instance_id, entry)
              for invoke_id, summary in summaries.items()
              for instance_id, entry in sorted((summary.get("Instances") or {}).items())]
    with ThreadPoolExecutor(max_workers=16) as pool:
        documents = list(pool.map(lambda w: reader.result(w[0], w[1]), wanted))
    return [{"InstanceId": instance_id, "InvokeId": invoke_id, "Status": entry.get("Status"),
             "ExitCode": entry.get("ExitCode"), "Duration": duration(document),
             "Truncated": bool(entry.get("Truncated")),
             "ErrorCode": (document or {}).get("ErrorCode", "")}
            for (invoke_id, instance_id, entry), document in zip(wanted, documents, strict=True)]


def request_rows(reader: ResultsReader, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """``instance_rows`` over a request summary: every batch's instances, and those never
    started (``NotStarted``, with their reason)."""
    entries = sorted((summary.get("Instances") or {}).items())
    with ThreadPoolExecutor(max_workers=16) as pool:
        documents = list(pool.map(lambda item: reader.json(str(item[1].get("Result", ""))),
                                  entries))
    return [{"InstanceId": instance_id, "InvokeId": entry.get("InvokeId", ""),
             "Status": entry.get("Status"), "ExitCode": entry.get("ExitCode"),
             "Duration": duration(document), "Truncated": bool(entry.get("Truncated")),
             "ErrorCode": (document or {}).get("ErrorCode", "")}
            for (instance_id, entry), document in zip(entries, documents, strict=True)]


def failed(row: dict[str, Any]) -> bool:
    return row["Status"] != "Success" and row["Status"] != layout.SKIPPED


def show_outcome(reader: ResultsReader, summaries: dict[str, dict[str, Any]], rows: list[dict[str, Any]],
                 out: IO[str] | None = None) -> None:
    """The per-instance table, then the output of (the first few) failed instances."""
    out = out or sys.stdout
    table([[r["InstanceId"], r["Status"], r["ExitCode"],
            None if r["Duration"] is None else f"{r['Duration']:.1f}s", r["Truncated"]]
           for r in rows], ["INSTANCE", "STATUS", "EXIT", "DURATION", "TRUNCATED"], out)
    bad = [r for r in rows if failed(r)]
    for row in [r for r in bad if r["InvokeId"]][:FAILED_OUTPUT_INSTANCES]:
        text = reader.output(row["InvokeId"], row["InstanceId"]) or ""
        lines = text.rstrip("\n").splitlines()[-FAILED_OUTPUT_LINES:]
        say(f"--- {row['InstanceId']} {row['Status']} (exit {row['ExitCode']}"
            + (f", {row['ErrorCode']}" if row["ErrorCode"] else "") + "), last "
            f"{len(lines)} line(s) of {reader.location(row['InvokeId'])}{row['InstanceId']}"
            "/output.txt", out)
        for line in lines:
            say(f"    {line}", out)
    if len(bad) > FAILED_OUTPUT_INSTANCES:
        say(f"… and {len(bad) - FAILED_OUTPUT_INSTANCES} more failed instance(s); "
            "see `assistflow results INVOKE_ID --instance ID`", out)
    for invoke_id, summary in summaries.items():
        counts = ", ".join(f"{k} {v}" for k, v in sorted((summary.get("Counts") or {}).items()))
        say(f"{invoke_id}: {summary.get('Status')} ({counts}); {reader.location(invoke_id)}", out)


def outcome_code(summaries: dict[str, dict[str, Any]]) -> int:
    return EXIT_OK if all(s.get("Status") == "Success" for s in summaries.values()) \
        else EXIT_FAILED


def show_request(reader: ResultsReader, summary: dict[str, Any], out: IO[str] | None = None
                 ) -> None:
    """The request summary's line: its status and counts over every batch and wave."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted((summary.get("Counts") or {}).items()))
    never = [i for i, e in (summary.get("Instances") or {}).items()
             if e.get("Status") == "NotStarted"]
    if never:
        reasons = sorted({str(e.get("Reason")) for e in summary["Instances"].values()
                          if e.get("Status") == "NotStarted"})
        say(f"{len(never)} instance(s) never started ({', '.join(reasons)})", out)
    say(f"request {summary.get('RequestId')}: {summary.get('Status')} ({counts}) over "
        f"{len(summary.get('InvokeIds') or [])} invocation(s); "
        f"{reader.request_location(str(summary.get('RequestId')))}", out)


def cmd_results(args: argparse.Namespace) -> int:
    reader = ResultsReader(target(args), args.bucket or "", args.prefix or "")
    if args.report:
        return _report(reader, args)
    if args.invoke_id.startswith("r-"):
        return _request(reader, args)
    if args.instance:
        return _one_instance(reader, args)
    summary = reader.summary(args.invoke_id)
    if summary is None:
        return _partial(reader, args)
    rows = instance_rows(reader, {args.invoke_id: summary})
    if args.json:
        emit_json({"Summary": summary, "Instances": rows})
    else:
        say(f"{args.invoke_id}  command {summary.get('CommandId')}  source "
            f"{summary.get('Source') or '-'}  request {summary.get('RequestId') or '-'}")
        show_outcome(reader, {args.invoke_id: summary}, rows)
    return outcome_code({args.invoke_id: summary})


def _partial(reader: ResultsReader, args: argparse.Namespace) -> int:
    collected = reader.collected(args.invoke_id)
    if not collected:
        raise CliError(f"no results for {args.invoke_id} in {reader.location(args.invoke_id)}: "
                       "unknown InvokeId, or nothing finished yet (`assistflow invocations show "
                       f"{args.invoke_id}`)", EXIT_REFUSED)
    documents = {i: reader.result(args.invoke_id, i) or {} for i in collected}
    if args.json:
        emit_json({"Summary": None, "Results": documents})
        return EXIT_OK
    say(f"{args.invoke_id}: still running; {len(collected)} instance(s) collected so far")
    table([[i, d.get("Status"), d.get("ExitCode"), duration(d), d.get("Truncated")]
           for i, d in documents.items()], ["INSTANCE", "STATUS", "EXIT", "DURATION",
                                            "TRUNCATED"])
    return EXIT_OK


def _one_instance(reader: ResultsReader, args: argparse.Namespace) -> int:
    result = reader.result(args.invoke_id, args.instance)
    if result is None:
        raise CliError(f"no result for {args.instance} in {reader.location(args.invoke_id)}: "
                       "wrong id, or the instance has not finished", EXIT_REFUSED)
    output = reader.output(args.invoke_id, args.instance) or ""
    if args.json:
        emit_json({"Result": result, "Output": output})
    else:
        table([[k, result.get(k)] for k in ("InstanceId", "Status", "ExitCode", "ErrorCode",
                                             "ErrorInfo", "StartTime", "FinishedTime",
                                             "OutputBytes", "Truncated", "Source")],
              ["FIELD", "VALUE"])
        say(f"--- output ({len(output.encode())} bytes)")
        shown = printable(output)
        sys.stdout.write(shown if shown.endswith("\n") or not shown else shown + "\n")
        sys.stdout.flush()
    status = result.get("Status")
    return EXIT_OK if status in ("Success", layout.SKIPPED) else EXIT_FAILED


def _request(reader: ResultsReader, args: argparse.Namespace) -> int:
    """``results r-…``: the request summary (every batch and wave), or one instance of it."""
    summary = reader.request_summary(args.invoke_id)
    if summary is None:
        raise CliError(f"no request summary for {args.invoke_id} at "
                       f"{reader.request_location(args.invoke_id)}: unknown RequestId, or the "
                       "request is not finished yet", EXIT_REFUSED)
    if args.instance:
        entry = (summary.get("Instances") or {}).get(args.instance)
        if entry is None:
            raise CliError(f"{args.instance} is not a target of {args.invoke_id}", EXIT_REFUSED)
        if entry.get("InvokeId"):
            args.invoke_id = entry["InvokeId"]
            return _one_instance(reader, args)
        document = reader.json(str(entry.get("Result", ""))) or {}
        emit_json({"Result": document, "Output": ""}) if args.json else table(
            [[k, document.get(k)] for k in ("InstanceId", "Status", "ErrorCode", "ErrorInfo")],
            ["FIELD", "VALUE"])
        return EXIT_FAILED
    rows = request_rows(reader, summary)
    if args.json:
        emit_json({"Summary": summary, "Instances": rows})
    else:
        say(f"{args.invoke_id}  command {summary.get('CommandId')}  source "
            f"{summary.get('Source') or '-'}")
        show_outcome(reader, {}, rows)
        show_request(reader, summary)
    return EXIT_OK if summary.get("Status") == "Success" and not any(
        failed(r) for r in rows) else EXIT_FAILED


def report_key(prefix: str, some_id: str) -> str:
    """``report.html`` of an invocation (``t-…``) or of a request's own summary (``r-…``)."""
    if some_id.startswith("r-"):
        return f"{prefix}/requests/{some_id}/report.html"
    return f"{prefix}/{some_id}/report.html"


def _report(reader: ResultsReader, args: argparse.Namespace) -> int:
    """Print a URL that opens the report: locally the dashboard's (its links to each
    instance's objects work there too), else — or with ``--presign`` — a presigned OSS URL.

    On Alibaba Cloud, OSS answers HTML fetched through a bucket's default domain with
    ``Content-Disposition: attachment`` and ``x-oss-force-download: true`` (buckets created
    after the dates it lists), so a browser downloads the report rather than showing it; a
    custom domain bound to the bucket (``--domain``) is displayed
    (https://www.alibabacloud.com/help/en/oss/user-guide/map-custom-domain-names-5).
    """
    key = report_key(reader.prefix, args.invoke_id)
    if not reader.exists(key):
        raise CliError(f"no report at oss://{reader.bucket_name}/{key}: unknown id, not "
                       "finished yet, or collected before reports were written", EXIT_REFUSED)
    if reader.where.local and not args.presign and not args.domain:
        from local.cli.common import load_endpoints
        from local.dashboard.page import object_url

        dashboard = load_endpoints(args.state_dir).get("dashboard_url", "")
        if dashboard:
            print(dashboard.rstrip("/") + object_url(key), flush=True)
            return EXIT_OK
    print(reader.presigned(key, args.expires, args.domain), flush=True)
    if not reader.where.local and not args.domain:
        say("note: OSS serves HTML from a bucket's default domain as a download; open the "
            "downloaded file, or pass --domain with a custom domain bound to the bucket",
            sys.stderr)
    return EXIT_OK
