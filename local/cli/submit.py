"""``assistflow submit FILE|-``: send a command request by any of the three doors.

``--via http`` signs the body with the webhook secret and POSTs it to the webhook (the local
cloud's by default); ``--via queue`` sends it to the request queue, as another system would;
``--via direct`` runs ``shared.intake.Intake.accept`` in this process with the CLI's credentials
(source ``cli``) — no function involved.

A queued request has no synchronous answer, so the CLI validates it first (exit 3 if invalid)
and gives it a ``ClientToken`` if it has none. To ``--wait`` for it, the CLI then finds the
invocations the queue function made: just before sending, it notes the invocations that already
match the request (``DescribeInvocations`` by command name — or by ``CommandId`` for a saved
command — with exactly the request's script and instances only from the request); the new
match after sending is ours, and with it every invocation of that ad-hoc command (one per
batch of 100 instances). Two identical requests queued at the same moment cannot be told apart;
a reused ``ClientToken`` maps to its old invocation, which is therefore not found.

``--tag KEY=VALUE`` (repeatable) and ``--resource-group ID`` select the instances instead of
listing them: they complete a request file that has no ``InstanceIds`` with the selector
(``Tags``, ``ResourceGroupId``), which the intake resolves. A file that names its instances, or
already selects them, is refused with exit 3 (the selector is given in one place). Sent
``--via queue`` with ``--wait``, the selector is resolved here too (DescribeInstances), to
recognise the invocations it made.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from local.cli.common import (
    EXIT_CLOUD,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Target,
    cloud_error,
    code_for_status,
    decode,
    emit_json,
    instances_of,
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
    if status != 202:
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


def _validated(body: bytes) -> Any:
    from shared.errors import RequestInvalidError
    from shared.request import parse_request

    try:
        return parse_request(body)
    except RequestInvalidError as exc:
        raise refusal(400, {**exc.to_dict()}) from None


def _resolved(where: Target, request: Any) -> Any:
    """A selector's request with the instances it selects now (to recognise its
    invocations); a request that lists them, as it is."""
    if not request.selector:
        return request
    from dataclasses import replace

    from shared.errors import AssistflowError
    from shared.targets import resolve

    try:
        targets = resolve(request, where.clients.ecs_in(request.region))
    except AssistflowError as exc:
        if hasattr(exc, "violations"):
            raise refusal(exc.status, exc.to_dict()) from None
        raise cloud_error(exc) from None
    return replace(request, instance_ids=targets.instance_ids)


def via_queue(where: Target, body: bytes, wait: bool
              ) -> tuple[dict[str, Any], Any, set[str]]:
    """Send to the request queue; (what was sent, the parsed request, invocations before)."""
    request = _validated(body)
    document = json.loads(body)
    if not document.get("ClientToken"):  # a redelivered message must not run it twice
        document["ClientToken"] = f"cli-{uuid.uuid4().hex}"
    if not where.request_queue:
        raise CliError("no request queue: pass --request-queue (the stack's RequestQueue "
                       "output)")
    if wait:
        request = _resolved(where, request)
    before = {r["InvokeId"] for r in _matching(where, request)} if wait else set()
    try:
        message_id = where.clients.queues.send(where.request_queue, json.dumps(document))
    except Exception as exc:
        raise cloud_error(exc) from None
    return ({"MessageId": message_id, "Queue": where.request_queue,
             "ClientToken": document["ClientToken"]}, request, before)


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


def _created(record: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(record.get("CreationTime", "")).replace("Z", "+00:00")
                                      ).timestamp()
    except ValueError:
        return 0.0


def _matching(where: Target, request: Any, command_id: str = "") -> list[dict[str, Any]]:
    """Recent invocations that run ``request``'s script (or saved command) on its instances."""
    client = where.clients.ecs_in(request.region)
    wanted = set(request.instance_ids)

    def same(record: dict[str, Any]) -> bool:
        instances = {i.get("InstanceId") for i in instances_of(record)}
        script = (record.get("CommandId") == request.command_id if request.command_id else
                  decode(str(record.get("CommandContent", ""))) == request.content)
        return script and bool(instances) and instances <= wanted

    try:
        if command_id:
            found = client.describe_invocations(command_id=command_id, limit=1000)
        else:
            found = client.describe_invocations(
                command_id=request.command_id,
                command_name="" if request.command_id else request.name, limit=PAGE)
    except Exception as exc:
        raise cloud_error(exc) from None
    return [r for r in found if same(r)]


def find_invocations(where: Target, request: Any, before: set[str], timeout: float
                     ) -> dict[str, Any]:
    """The invocations the queue function made for ``request`` (see the module docstring)."""
    expected = math.ceil(len(request.instance_ids) / BATCH)
    deadline = time.monotonic() + timeout
    first_seen = 0.0
    while True:
        found = [r for r in _matching(where, request) if r["InvokeId"] not in before]
        if found and not request.command_id:  # every batch of the ad-hoc command
            found = [r for r in _matching(where, request, found[0]["CommandId"])
                     if r["InvokeId"] not in before]
        if found:
            first_seen = first_seen or time.monotonic()
            # Fewer batches than expected is final once pre-flight may have skipped some.
            if len(found) >= expected or time.monotonic() - first_seen > 10:
                found.sort(key=_created)
                return {"CommandId": found[0]["CommandId"],
                        "InvokeIds": [r["InvokeId"] for r in found]}
        if time.monotonic() > deadline:
            reused = " (or its ClientToken was used before)" if request.client_token else ""
            raise CliError(f"the request queue's function has not invoked the request after "
                           f"{timeout:.0f} s: it may have refused it{reused}; see its log or "
                           f"the dead-letter queue {where.request_queue}-dlq", EXIT_CLOUD)
        time.sleep(0.3 if where.local else 2.0)


def _report(accepted: dict[str, Any], via: str) -> None:
    if "InvokeIds" not in accepted:  # queued, not yet invoked
        say(f"queued as message {accepted['MessageId']} in {accepted['Queue']} (ClientToken "
            f"{accepted['ClientToken']}); the submit-queue function invokes it")
        return
    say(f"submitted via {via}: command {accepted.get('CommandId')}, "
        f"{len(accepted['InvokeIds'])} invocation(s), request {accepted.get('RequestId', '-')}")
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


def cmd_submit(args: argparse.Namespace) -> int:
    from local.cli.results import ResultsReader, instance_rows, outcome_code, show_outcome
    from local.cli.watch import wait

    body = with_selector(read_body(args.file), args.tag or [], args.resource_group or "")
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
        accepted, request, before = via_queue(where, body, args.wait)
    progress = sys.stderr if args.json else sys.stdout
    if not args.json:
        _report(accepted, args.via)
    if not args.wait:
        if args.json:
            emit_json(accepted)
        return EXIT_OK
    assert reader is not None
    timeout = args.wait_timeout or float(document.get("Timeout") or 60) + 240
    if args.via == "queue":
        say("waiting for the submit-queue function to invoke it…", progress)
        accepted.update(find_invocations(where, request, before, min(timeout, 120)))
        accepted["Results"] = [reader.location(i) for i in accepted["InvokeIds"]]
        say(f"found: command {accepted['CommandId']}, invocation(s) "
            f"{', '.join(accepted['InvokeIds'])}", progress)
    invoke_ids = list(accepted["InvokeIds"])
    summaries = wait(where, reader, invoke_ids, timeout, progress, region)
    rows = instance_rows(reader, summaries)
    if args.json:
        emit_json({"Accepted": accepted, "Summaries": summaries, "Instances": rows})
    else:
        show_outcome(reader, summaries, rows)
    return outcome_code(summaries)

