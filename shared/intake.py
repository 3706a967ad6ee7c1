"""From a trigger's delivery to Cloud Assistant work: the path every adapter shares.

validate (JSON Schema) -> check_allowed (the deployment's allow-list) -> resolve (a selector's
instances, ``shared.targets``) -> preflight (saved command, instance states) -> dispatch
(CreateCommand, InvokeCommand, record, follow-up). Each step raises an ``AssistflowError`` with
a code, an HTTP-ish status and, where it has several reasons, the ``Errors`` list — the one
JSON shape all triggers answer with. Nothing is created
unless every check before dispatch passed.

Every answer carries ``RequestId``: the id of the *logical* request, ``r-`` and 24 hex digits
derived from its idempotency key — the request's ``ClientToken`` when the body is valid and has
one, else the trigger's key (webhook signature, MNS message id, timer name and fire time), else,
for a delivery with no key at all (an unsigned webhook), the FC request id. Every delivery of
one request gets the same id, and ``result.json`` / ``summary.json`` carry it too. The FC
request id of the delivery is logged beside it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Any

from shared import fanout
from shared.clients import Clients, default_clients
from shared.dispatch import dispatch
from shared.dryrun import DryRunAnswer, dry_run
from shared.errors import AssistflowError
from shared.fanout import fans_out
from shared.intent import Accepted
from shared.ledger import DEFAULT_LEASE, RequestRecord, read_request
from shared.policy import check_allowed, check_saved_command, needs_saved_command
from shared.preflight import BATCH_SIZE, Plan, SavedCommand, describe_saved, preflight
from shared.request import CommandRequest, parse_request
from shared.retry import SUBMIT_PATIENCE, patience
from shared.targets import Resolution, check_allowed_targets, resolve

log = logging.getLogger("assistflow.intake")


def request_id_of(idempotency_key: str) -> str:
    """The id of the logical request whose idempotency key is ``idempotency_key``."""
    return "r-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


class Intake:
    """One delivery of a command request on its way through the steps above.

    ``source`` is the trigger (http, queue, timer, cli); ``key`` its idempotency key, set as
    soon as it is known (a webhook's once its signature is verified); ``request`` the valid
    request, once validated. ``clients`` default to the function instance's, with the
    credentials of ``context`` (FC's, for this invocation).
    """

    def __init__(self, source: str, *, key: str = "", fc_request_id: str = "",
                 clients: Clients | None = None, context: Any = None) -> None:
        self.source = source
        self.key = key
        self.fc_request_id = fc_request_id
        self.request: CommandRequest | None = None
        self.saved: SavedCommand | None = None  # the request's saved command, if looked up
        self.resolution: Resolution | None = None  # a selector's targets, once resolved
        self._record: tuple[RequestRecord | None] | None = None  # read once, if needed
        self._clients = clients
        self._context = context

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            self._clients = default_clients(self._context)
        return self._clients

    @property
    def idempotency_key(self) -> str:
        token = self.request.client_token if self.request else ""
        return token or self.key or f"fc:{self.fc_request_id}"

    @property
    def request_id(self) -> str:
        return request_id_of(self.idempotency_key)

    def accept(self, body: bytes | str | dict[str, Any]) -> Accepted | DryRunAnswer:
        """Every step, in order, with a submit's patience for retries (``shared.retry``). A
        DryRun ends after the checks, with the verdicts (``shared.dryrun``)."""
        with patience(SUBMIT_PATIENCE):
            self.validate(body)
            self.check_allowed()
            if self._validated().dry_run:
                return self.dry_run()
            self.resolve()
            return self.dispatch(self.preflight())

    def dry_run(self) -> DryRunAnswer:
        """Each target's pre-flight verdict and the plan; nothing created or recorded. A
        selector is resolved first (every adapter's dry run lists what it selects), with the
        allow-list shown per target (``NotAllowed``) instead of refusing the request."""
        if self.resolution is None:
            self.resolve(enforce_allow_list=False)
        return dry_run(self._validated(), self.clients, self.request_id, self.saved,
                       self.resolution.facts if self.resolution else None)

    def validate(self, body: bytes | str | dict[str, Any]) -> CommandRequest:
        """``RequestInvalidError`` with every violation, or the typed request."""
        self.request = parse_request(body)
        return self.request

    def check_allowed(self) -> None:
        """The allow-list (403), before anything runs; for a saved command that the allow-list
        judges, or sent with a ``Type``, after looking it up (one DescribeCommands): its own
        type governs (``shared.policy.check_saved_command``)."""
        request, settings = self._validated(), self.clients.settings
        # A DryRun names the instances outside AllowedInstances in its verdicts instead
        check_allowed(replace(request, instance_ids=()) if request.dry_run else request,
                      settings)
        if needs_saved_command(request, settings):
            self.saved = describe_saved(self.clients.ecs_in(request.region), request.command_id)
            check_saved_command(request, self.saved, settings)

    def resolve(self, *, enforce_allow_list: bool = True) -> CommandRequest:
        """A selector's targets (``shared.targets.resolve``): the request from here on names
        them in ``instance_ids`` — the list its record holds when the request was recorded
        before (a redelivery), else DescribeInstances' matches (422 for none, or more than
        10,000). The allow-list then judges them as it judges listed instances (403), unless
        ``enforce_allow_list`` is False (a dry run shows it per target instead). A request that
        lists its instances passes unchanged."""
        request = self._validated()
        if not request.selector:
            return request
        self.resolution = resolve(request, self.clients.ecs_in(request.region),
                                  self.recorded())
        self.request = request = replace(request, instance_ids=self.resolution.instance_ids)
        if enforce_allow_list:
            check_allowed_targets(request, self.clients.settings.allowed_instances)
        return request

    def recorded(self) -> RequestRecord | None:
        """The request record of this request, if a delivery wrote it (read once)."""
        if self._record is None:
            self._record = (read_request(self.clients.results, self.request_id),)
        return self._record[0]

    def preflight(self) -> Plan:
        """The plan; none is looked up for a request already recorded (a redelivery of a
        request of several batches: its record's batches stand, shared.ledger). Targets a
        selector resolved carry what DescribeInstances said of them (``Plan.known``)."""
        request = self._validated()
        fanned = fans_out(request, self.clients, len(request.instance_ids))
        if (len(request.instance_ids) > BATCH_SIZE or fanned) and self.recorded() is not None:
            return Plan(request.instance_ids)
        known = self.resolution.facts if self.resolution else None
        # a fanned-out request (waves too) is checked up front: a refusal must come before
        # any batch runs
        return preflight(request, self.clients, self.saved, known, up_front=fanned)

    @property
    def lease(self) -> float:
        """Seconds this delivery may run: its function's Timeout (FC's ``context.function.
        timeout``, https://www.alibabacloud.com/help/doc-detail/422182.htm); past it, a request
        record this delivery left unfinished is the reconciler's."""
        timeout = getattr(getattr(self._context, "function", None), "timeout", None)
        return float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 \
            else DEFAULT_LEASE

    def dispatch(self, plan: Plan) -> Accepted:
        """Run the request. After a partial start the answer names what runs and, per
        instance, what could not start (``NotStarted``); it is never a refusal once anything
        runs."""
        request = self._validated()
        run = fanout.submit if fans_out(request, self.clients, len(plan.instance_ids)) \
            else dispatch
        accepted = run(request, plan, self.clients, source=self.source,
                       idempotency_key=self.idempotency_key, request_id=self.request_id,
                       lease=self.lease)
        log.info("%s via %s accepted: %s", self.label, self.source,
                 ", ".join(accepted.invoke_ids) or f"{accepted.plan} queued")
        return accepted

    def refusal(self, err: AssistflowError) -> dict[str, Any]:
        """The answer to a refused delivery: the error's shape and the logical request's id."""
        return {**err.to_dict(), "RequestId": self.request_id}

    @property
    def label(self) -> str:
        """For log lines: the logical request's id with the FC request id beside it."""
        return f"request {self.request_id} (FC request {self.fc_request_id or '-'})"

    def _validated(self) -> CommandRequest:
        if self.request is None:
            raise AssertionError("validate the request first")
        return self.request
