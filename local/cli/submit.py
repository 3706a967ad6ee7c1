"""``assistflow submit FILE|-``: send a command request by any of the three doors.

``--via http`` signs the body with the webhook secret and POSTs it to the webhook (the local
cloud's by default); ``--via queue`` sends it to the request queue, as another system would;
``--via direct`` runs ``shared.intake.Intake.accept`` in this process with the CLI's credentials
(source ``cli``) — no function involved.

A queued request has no synchronous answer, so the CLI validates it first (exit 3 if invalid)
and gives it a ``ClientToken`` if it has none: its RequestId (``r-`` and 24 hex digits of the
SHA-256 of the token, ``shared.intake.request_id_of``) is then known, and ``--wait`` waits for
the request summary (``{prefix}/requests/{RequestId}/summary.json``) whichever way the request
went — every batch and wave of it, and the instances it never started.

``--dry-run``, ``--max-concurrency`` and ``--max-errors`` set the request's ``DryRun`` and
``RateControl`` before it is sent. A dry run is answered (200: each target's verdict and the
plan) over http and direct; the request queue has nobody to answer it, so it is refused there.

``--tag KEY=VALUE`` (repeatable) and ``--resource-group ID`` select the instances instead of
listing them: they complete a request file that has no ``InstanceIds`` with the selector
(``Tags``, ``ResourceGroupId``), which the intake resolves. A file that names its instances, or
already selects them, is refused with exit 3 (the selector is given in one place).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from local.cli.common import (
    EXIT_CLOUD,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Target,
    cloud_error,
    code_for_status,
    emit_json,
    say,
    table,
    target,
)

BATCH = 100  # InvokeCommand's limit; dispatch makes one invocation per batch
PAGE = 50  # the newest invocations are enough to find the one just made


class Refused(CliError):
    """An answer other than 202, with every violation the cloud listed."""

    def __init__(self, message: str, code: int, details: list[str]) -> None:
        super().__init__(message, code)
        self.details = details


def read_body(source: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the command request: {exc}") from None


def refusal(status: int, payload: dict[str, Any]) -> Refused:
    details = [f"{e.get('path', '$')}: {e.get('message', '')}"
               for e in payload.get("Errors") or [] if isinstance(e, dict)]
    if any(isinstance(e, dict) and (e.get("path"), e.get("rule")) == ("$.InstanceIds", "required")
           for e in payload.get("Errors") or []):
        details.append("(a request file without InstanceIds is completed by --tag KEY=VALUE "
                       "and/or --resource-group ID)")
    code = payload.get("Code") or f"HTTP {status}"
    message = str(payload.get("Message") or payload.get("raw") or "no reason given")
    if details and message.startswith("the command request has"):
        message = message.split(": ", 1)[0] + ":"  # the details list every one of them
    return Refused(f"{code} ({status}): {message}", code_for_status(status), details)


def via_http(where: Target, body: bytes) -> dict[str, Any]:
    import urllib.error

    from shared import webhook

    if not where.webhook_url:
        raise CliError("no webhook URL: pass --webhook-url or set ASSISTFLOW_WEBHOOK_URL (the "
                       "stack's WebhookUrl output), or use --via queue / --via direct")
    if not where.webhook_secret:
        raise CliError("no webhook secret: set ASSISTFLOW_WEBHOOK_SECRET (the stack's "
                       "WebhookSecret parameter)")
    try:
        # Loopback must not go through a proxy from the environment; the real webhook may.
        status, raw = webhook.post(where.webhook_url, where.webhook_secret, body,
                                   use_env_proxy=not where.local)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach the webhook at {where.webhook_url}: {reason}"
                       + ("; is `assistflow up` still running?" if where.local else ""),
                       EXIT_USAGE if where.local else EXIT_CLOUD) from None
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        payload = {"raw": raw.decode("utf-8", "replace")[:200]}
    if status not in (200, 202):  # 200: a DryRun's answer
        raise refusal(status, payload)
    return dict(payload)


def with_selector(body: bytes, tags: list[str], resource_group: str) -> bytes:
    """The request file completed with ``--tag`` / ``--resource-group`` (see the module
    docstring); ``body`` as it is without them."""
    if not tags and not resource_group:
        return body
    from shared import strict_json

    try:
        document = strict_json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise CliError("--tag / --resource-group complete a command request: the file must be "
                       "a JSON object", EXIT_INVALID)
    given = [name for name in ("InstanceIds", "Tags", "ResourceGroupId") if name in document]
    if given:
        raise CliError(f"the request file already names its instances ({', '.join(given)}); "
                       "--tag / --resource-group select them instead: remove "
                       f"{' and '.join(given)} from the file, or drop the flags", EXIT_INVALID)
    pairs = []
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise CliError(f"--tag {tag!r}: give KEY=VALUE, e.g. --tag team=ops")
        pairs.append({"Key": key, "Value": value})
    if pairs:
        document["Tags"] = pairs
    if resource_group:
        document["ResourceGroupId"] = resource_group
    return json.dumps(document, ensure_ascii=False).encode()


def with_options(body: bytes, args: argparse.Namespace) -> bytes:
    """The body with ``--dry-run`` / ``--max-concurrency`` / ``--max-errors`` applied."""
    if not (args.dry_run or args.max_concurrency or args.max_errors):
        return body
    try:
        document = json.loads(body)
    except ValueError:
        return body  # the intake answers 400 for it
    if not isinstance(document, dict):
        return body
    if args.dry_run:
        document["DryRun"] = True
    rate = dict(document.get("RateControl") or {})
    for name, value in (("MaxConcurrency", args.max_concurrency),
                        ("MaxErrors", args.max_errors)):
        if value:
            rate[name] = int(value) if value.isdigit() else value
    if rate:
        document["RateControl"] = rate
    return json.dumps(document).encode()


def _validated(body: bytes) -> Any:
    from shared.errors import RequestInvalidError
    from shared.request import parse_request

    try:
        return parse_request(body)
    except RequestInvalidError as exc:
        raise refusal(400, {**exc.to_dict()}) from None


def via_queue(where: Target, body: bytes) -> dict[str, Any]:
    """Send to the request queue; what was sent, with the RequestId it will have."""
    from shared.intake import request_id_of

    request = _validated(body)
    if request.dry_run:
        raise CliError("a dry run sent to the request queue has nobody to answer it (the "
                       "function only logs it): use --via http or --via direct")
    document = json.loads(body)
    if not document.get("ClientToken"):  # a redelivered message must not run it twice
        document["ClientToken"] = f"cli-{uuid.uuid4().hex}"
    if not where.request_queue:
        raise CliError("no request queue: pass --request-queue (the stack's RequestQueue "
                       "output)")
    try:
        message_id = where.clients.queues.send(where.request_queue, json.dumps(document))
    except Exception as exc:
        raise cloud_error(exc) from None
    return {"MessageId": message_id, "Queue": where.request_queue,
            "ClientToken": document["ClientToken"],
            "RequestId": request_id_of(document["ClientToken"])}


def via_direct(where: Target, body: bytes) -> dict[str, Any]:
    from shared.errors import AssistflowError, RequestInvalidError
    from shared.intake import Intake

    intake = Intake("cli", key=f"cli:{uuid.uuid4().hex}", clients=where.clients)
    try:
        accepted = intake.accept(body)
    except RequestInvalidError as exc:
        raise refusal(400, exc.to_dict()) from None
    except AssistflowError as exc:
        if hasattr(exc, "violations"):
            raise refusal(exc.status, exc.to_dict()) from None
        raise cloud_error(exc) from None
    return dict(accepted.to_dict())


def _report(accepted: dict[str, Any], via: str) -> None:
    if accepted.get("DryRun"):
        _report_dry_run(accepted)
        return
    if "InvokeIds" not in accepted:  # queued, not yet invoked
        say(f"queued as message {accepted['MessageId']} in {accepted['Queue']} (ClientToken "
            f"{accepted['ClientToken']}, request {accepted['RequestId']}); the submit-queue "
            "function invokes it")
        return
    plan = accepted.get("Plan")
    if plan:  # fanned out: the dispatch function invokes the batches
        say(f"submitted via {via}: command {accepted.get('CommandId')}, request "
            f"{accepted.get('RequestId', '-')}: {plan.get('Instances')} instance(s) in "
            f"{plan.get('Batches')} batch(es), {plan.get('Waves')} wave(s), dispatched in the "
            f"background; summary {accepted.get('Summary')}")
    else:
        say(f"submitted via {via}: command {accepted.get('CommandId')}, "
            f"{len(accepted['InvokeIds'])} invocation(s), request "
            f"{accepted.get('RequestId', '-')}")
    locations = list(accepted.get("Results") or [])
    table([[i, locations[n] if n < len(locations) else None]
           for n, i in enumerate(accepted["InvokeIds"])], ["INVOKE ID", "RESULTS"], indent="  ")
    for item in accepted.get("Skipped") or []:
        say(f"  skipped {item['InstanceId']}: {item['Reason']} ({item['Message']})")
    waiting: dict[tuple[str, bool], int] = {}
    for item in accepted.get("NotStarted") or []:  # a partial start: the rest runs
        key = (str(item["Reason"]), bool(item["Retryable"]))
        waiting[key] = waiting.get(key, 0) + 1
    for (reason, retryable), count in waiting.items():
        say(f"  {count} instance(s) not started: {reason}" + (
            "; submit the same request again (same ClientToken) to start them" if retryable
            else ""))


def _report_dry_run(answer: dict[str, Any]) -> None:
    say(f"dry run, request {answer.get('RequestId')}: nothing was created")
    table([[t["InstanceId"], t["Verdict"], t.get("Message", "")] for t in answer["Targets"]],
          ["INSTANCE", "VERDICT", "WHY"], indent="  ")
    plan = answer.get("Plan") or {}
    say(f"plan: {plan.get('Instances')} instance(s) would run in "
        f"{len(plan.get('Batches') or [])} batch(es), wave sizes {plan.get('Waves')}"
        + (f", error budget {plan.get('ErrorBudget')}" if "ErrorBudget" in plan else "")
        + ("; refused as a whole (OnIneligible: Refuse)" if plan.get("Refused") else ""))


def cmd_submit(args: argparse.Namespace) -> int:
    from local.cli.results import (
        ResultsReader,
        failed,
        request_rows,
        show_outcome,
        show_request,
    )
    from local.cli.watch import wait_request

    body = with_options(with_selector(read_body(args.file), args.tag or [],
                                      args.resource_group or ""), args)
    where = target(args)
    try:
        document = json.loads(body)
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    region = str(document.get("RegionId", ""))
    output = document.get("Output")
    if not isinstance(output, dict):
        output = {}
    # A request's Output names where its results go; that is where to wait for them.
    reader = ResultsReader(where, str(output.get("Bucket", "")), str(output.get("Prefix", ""))) \
        if args.wait else None
    if args.via == "http":
        accepted = via_http(where, body)
    elif args.via == "direct":
        accepted = via_direct(where, body)
    else:
        accepted = via_queue(where, body)
    progress = sys.stderr if args.json else sys.stdout
    if not args.json:
        _report(accepted, args.via)
    if accepted.get("DryRun"):
        if args.json:
            emit_json(accepted)
        plan = accepted.get("Plan") or {}
        return EXIT_OK if plan.get("Instances") and not plan.get("Refused") else EXIT_FAILED
    if not args.wait:
        if args.json:
            emit_json(accepted)
        return EXIT_OK
    assert reader is not None
    timeout = args.wait_timeout or float(document.get("Timeout") or 60) + 240
    request_id = str(accepted["RequestId"])
    summary = wait_request(where, reader, request_id, list(accepted.get("InvokeIds") or []),
                           timeout, progress, region)
    if args.via == "queue" or accepted.get("Plan"):
        say(f"found: command {summary.get('CommandId')}, invocation(s) "
            f"{', '.join(summary.get('InvokeIds') or [])}", progress)
    summaries = {i: reader.summary(i) or {} for i in summary.get("InvokeIds") or []}
    rows = request_rows(reader, summary)
    if args.json:
        emit_json({"Accepted": accepted, "Summary": summary, "Summaries": summaries,
                   "Instances": rows})
    else:
        show_outcome(reader, summaries, rows)
        show_request(reader, summary)
    return EXIT_OK if summary.get("Status") == "Success" and not any(
        failed(r) for r in rows) else EXIT_FAILED
