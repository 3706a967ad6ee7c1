"""Turn an accepted command request into Cloud Assistant work, exactly once.

A request that fits one call (at most 100 instances) costs one ECS call: a one-off script goes
out as ``RunCommand`` (created, invoked, and deleted by Cloud Assistant when it is over), a
saved command as ``InvokeCommand`` (with a DescribeCommands beside it when the deadline needs
the saved Timeout); a periodic script is created (CreateCommand) and invoked, its command
deleted by the collector once the schedule ends. Only when that call is refused for its
instances does pre-flight look at them (``shared.preflight.refused``), for the 422 or to run
again without the ineligible ones.
A larger request is checked up front, its command created once, and its batches invoked side by
side (``shared.parallel``). Then, per batch: record the invocation, queue its first follow-up
and put its open marker (``shared.handoff``, all at once).

Before the first call that could run anything, the request's intent is recorded
(``shared.intent``, ``shared.ledger``): a submit that dies after that call leaves a record the
reconciler finds. A redelivery of the request (same idempotency key) reads that record and
starts only the batches that did not run. Once anything runs, the answer is never a refusal:
it names what runs (InvokeIds) and, per instance, what could not start and why
(``Accepted.not_started``). A refusal — nothing ran — cleans up after itself: nothing is left
behind.

Every call carries a ``ClientToken`` derived from the request's idempotency key, so a
redelivered trigger gets the same command and the same invocations back instead of running the
script twice; the call made again without ineligible instances keeps its batch's token (a
refused call leaves its token unused: ECS keeps a token's answer for a request it processed —
"How to ensure idempotence", https://www.alibabacloud.com/help/en/doc-detail/25693.html — and a
refused one was not).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NoReturn, cast

from shared.clients import Clients, CloudAssistant
from shared.config import Settings
from shared.errors import AssistflowError, CloudCallError
from shared.followup import COMMAND_EXCERPT, DEADLINE_MARGIN, FollowUp
from shared.handoff import for_batch, hand_over
from shared.intent import (
    Accepted,
    RequestAbandonedError,
    accepted_from,
    check_same,
    close_request,
    drop_request,
    not_run,
    open_request,
    permanent,
    turned_away,
)
from shared.ledger import (
    DEFAULT_LEASE,
    INVOKED,
    LEASE_MARGIN,
    SUBMIT,
    Batch,
    RequestRecord,
    Skipped,
    collect_due,
    content_sha256,
    fingerprint,
    marker_key,
    read_request,
)
from shared.parallel import settle
from shared.preflight import BATCH_SIZE, Plan, refused, saved_command
from shared.request import DEFAULT_TIMEOUT, CommandRequest

log = logging.getLogger("assistflow.dispatch")

# The collector's deadline needs the saved command's Timeout; when its lookup failed after the
# command was invoked, the longest Timeout Cloud Assistant allows stands in (a deadline that
# is too late only delays CollectorTimeout; one too early would give up on running instances).
MAX_TIMEOUT = 86400


def client_token(idempotency_key: str, purpose: str) -> str:
    """A ≤64-character ASCII ``ClientToken`` for one call made on behalf of one request."""
    return hashlib.sha256(f"{idempotency_key}|{purpose}".encode()).hexdigest()


def batches(instance_ids: tuple[str, ...], size: int = BATCH_SIZE) -> list[tuple[str, ...]]:
    return [instance_ids[i:i + size] for i in range(0, len(instance_ids), size)]


@dataclass
class _Run:
    """One delivery's work on a request: its record as the calls leave it."""

    request: CommandRequest
    clients: Clients
    ecs: CloudAssistant
    key: str
    record: RequestRecord
    errors: list[BaseException] = field(default_factory=list)
    unwatched: bool = False  # a batch runs but could not be handed to the collector


def dispatch(request: CommandRequest, plan: Plan, clients: Clients, *, source: str,
             idempotency_key: str, request_id: str, lease: float = DEFAULT_LEASE,
             now: Callable[[], float] = time.time) -> Accepted:
    """Invoke the command on the plan's instances and record each batch.

    ``idempotency_key`` identifies the logical request (its ``ClientToken`` if given, else the
    trigger's key); ``request_id`` is the id derived from it; ``lease``: seconds this delivery
    may still run (its function's Timeout), after which its intent is the reconciler's.
    Raises ``CloudCallError`` if Cloud Assistant refuses (or is unavailable) before anything
    runs, ``IneligibleInstancesError`` if pre-flight must.
    """
    ecs = clients.ecs_in(request.region)
    started = now()
    one = len(plan.instance_ids) <= BATCH_SIZE
    creates = request.adhoc and (request.periodic or not one)  # CreateCommand, deleted by us
    record = read_request(clients.results, request_id) if creates else None
    if record is not None:
        check_same(record, fingerprint(request))
    else:
        command_id = request.command_id or (
            resolve_command(request, ecs, idempotency_key, _timeout(request, plan))
            if creates else "")
        template = _first_followup(request, clients.settings, command_id, source=source,
                                   request_id=request_id, submitted_at=started,
                                   timeout=_timeout(request, plan),
                                   batches=len(batches(plan.instance_ids)), delete=creates)
        record = open_request(clients, _intent(request, plan, template, started + lease))
    if record.settled:  # a redelivery of a request that started all it could
        if not record.invoked:
            raise RequestAbandonedError(
                "this request never started and was given up (its command is deleted); send "
                "it again with a new ClientToken")
        return accepted_from(record)
    run = _Run(request, clients, ecs, idempotency_key, record)
    if one:
        _one_batch(run, plan, started)
    else:
        _batches(run, started, _timeout(request, plan))
    if not run.record.invoked:
        _nothing_runs(run, creates, now())
    run.record = close_request(clients, run.record, run.unwatched, now())
    accepted = accepted_from(run.record)
    log.info("request %s: %s runs as %s%s", request_id, accepted.command_id or "the script",
             ", ".join(accepted.invoke_ids),
             f"; {len(accepted.not_started)} instance(s) not started"
             if accepted.not_started else "")
    return accepted


def _nothing_runs(run: _Run, creates: bool, now: float) -> NoReturn:
    """Raise the refusal, or the failure to retry. A refusal leaves nothing behind; so does a
    call the service turned away (throttled, unavailable) when no command was made for the
    request. Otherwise the record stays: the command made for the retry is the reconciler's to
    delete if no retry comes, and a call that may have reached Cloud Assistant is looked up."""
    errors = run.errors
    if all(permanent(e) or (not creates and turned_away(e)) for e in errors):
        drop_request(run.clients, run.record)
    else:
        close_request(run.clients, run.record, run.unwatched, now)
    if all(permanent(e) for e in errors):
        clean_up_refused(run.request, run.ecs, run.record.command_id if creates else "",
                         errors[0])
        raise errors[0]
    raise next(e for e in errors if not permanent(e))


def _intent(request: CommandRequest, plan: Plan, template: FollowUp, lease_until: float
            ) -> RequestRecord:
    """The request record before any call could run anything: every batch ``Pending``, the
    intent marker due once this submit has certainly ended."""
    due = lease_until + LEASE_MARGIN
    return RequestRecord(
        request_id=template.request_id, fingerprint=fingerprint(request),
        created_at=template.submitted_at, lease_until=lease_until, command_name=request.name,
        content_sha256=content_sha256(request.content_b64), command_id=template.command_id,
        deletes_command=template.adhoc, followup=template,
        batches=tuple(Batch(group) for group in batches(plan.instance_ids)),
        skipped=_skipped(plan),
        marker=marker_key(template.request_id, SUBMIT, due))


def _skipped(plan: Plan) -> tuple[Skipped, ...]:
    return tuple((i.instance_id, i.reason, i.message) for i in plan.skipped)


def _refreshed(template: FollowUp, started: float, timeout: int) -> FollowUp:
    """The template for batches invoked now: a batch resumed later waits its full Timeout."""
    return replace(template, deadline=max(template.deadline,
                                          started + timeout + DEADLINE_MARGIN))


def events_reach(request: CommandRequest, settings: Settings) -> bool:
    """Will this command's TaskCompleted events reach the collector? The trigger's filter takes
    only commands named ``settings.events_command_prefix…`` (template.yml: EventsCommandPrefix,
    by default the request's default Name); a saved command's name is not looked up, so saved
    commands, like other names, are collected by follow-ups alone."""
    return not request.command_id and request.name.startswith(settings.events_command_prefix)


def _one_batch(run: _Run, plan: Plan, started: float) -> None:
    """The request's only batch: one call (pre-flight if refused), then its hand-over."""
    record = run.record
    try:
        command_id, invoke_id, plan = _one_call(run.request, plan, run.ecs, run.key,
                                                record.command_id)
    except AssistflowError as exc:
        run.errors.append(exc)
        run.record = record.with_batch(0, not_run(record.batches[0], exc))
        return
    template = _refreshed(replace(record.followup, command_id=command_id), started,
                          _timeout(run.request, plan))
    run.record = replace(record, command_id=command_id, followup=template,
                         skipped=_skipped(plan),
                         batches=(Batch(plan.instance_ids, INVOKED, invoke_id),))
    handed = _hand_over(run, 0, invoke_id, run.record.skipped)
    run.record = run.record.with_batch(0, replace(run.record.batches[0], handed=handed))
    run.unwatched = not handed


def _hand_over(run: _Run, index: int, invoke_id: str,
               skipped: tuple[Skipped, ...] = ()) -> bool:
    template = run.record.followup
    group = run.record.batches[index].instances
    marker = marker_key(run.record.request_id, index, collect_due(template.deadline))
    followup = for_batch(template, run.clients.settings, invoke_id, group,
                         events_reach(run.request, run.clients.settings), marker)
    return hand_over(run.clients, followup, skipped)


def _one_call(request: CommandRequest, plan: Plan, ecs: CloudAssistant, key: str,
              command_id: str) -> tuple[str, str, Plan]:
    """One batch: RunCommand for a one-off script (``command_id`` empty), else InvokeCommand
    of ``command_id`` (the saved command, or the one created for a periodic script:
    RunCommand's own command is deleted when the run is over, and a schedule outlives its
    first run); pre-flight if refused. (CommandId, InvokeId, plan)."""
    runs = not command_id
    token = client_token(key, "run-0" if runs else "invoke-0")

    def attempt(targets: tuple[str, ...]) -> tuple[str, str]:
        if runs:
            return run_batch(request, ecs, targets, token)
        return command_id, invoke_batch(request, ecs, command_id, targets, token)

    (command_id, invoke_id), plan = _attempt_or_check(request, plan, ecs, attempt)
    return command_id, invoke_id, plan


def _attempt_or_check(request: CommandRequest, plan: Plan, ecs: CloudAssistant,
                      attempt: Callable[[tuple[str, ...]], tuple[str, str]]
                      ) -> tuple[tuple[str, str], Plan]:
    """``attempt`` on the plan; if refused for its instances, pre-flight and (Skip) once more
    on the rest — with the same token: the refused call used none."""
    # A saved command's Timeout sets the collector's deadline when the request has none: it
    # is looked up beside the invocation, not before it.
    lookup = bool(request.command_id) and request.timeout is None and plan.saved_timeout is None
    outcomes: list[object] = list(settle(
        [lambda: attempt(plan.instance_ids)]
        + ([lambda: saved_command(ecs, request.command_id)] if lookup else []),
        stop_on_error=False))
    answer = cast("tuple[str, str] | BaseException", outcomes[0])
    saved = cast("tuple[str, int | None] | BaseException | None",
                 outcomes[1] if lookup else None)
    # A saved command's own type governs (a Type sent beside it was checked against it first,
    # shared.policy.needs_saved_command): the request's Type never stands in for it.
    command_type = plan.saved_type if request.command_id else request.type
    if isinstance(saved, tuple):
        command_type = saved[0]
        plan = replace(plan, saved_timeout=saved[1], saved_type=saved[0])
    if isinstance(answer, CloudCallError) and not plan.checked:
        if not command_type and request.command_id:  # the OS check needs the saved type
            command_type, timeout = saved_command(ecs, request.command_id)
            plan = replace(plan, saved_timeout=plan.saved_timeout or timeout)
        plan = refused(request, plan, ecs, answer, command_type)
        answer = attempt(plan.instance_ids)
    if isinstance(answer, BaseException):
        raise answer
    if isinstance(saved, BaseException):  # it runs: never a refusal now, whatever the deadline
        log.warning("%s runs, but its command's Timeout could not be read (%s); the "
                    "collector waits up to %d s", answer[1], saved, MAX_TIMEOUT)
        plan = replace(plan, saved_timeout=MAX_TIMEOUT)
    return answer, plan


def _batches(run: _Run, started: float, timeout: int) -> None:
    """A request of several batches (checked up front, its command created): the batches that
    do not run yet, side by side, each handed to the collector as soon as it is invoked. A
    batch not started because another failed first stays ``NotStarted``: a redelivery
    resumes it."""
    record = run.record
    todo = [n for n, b in enumerate(record.batches) if not b.resolved]
    skipped = record.skipped
    run.record = record = replace(record, followup=_refreshed(record.followup, started,
                                                              timeout))

    def batch(index: int) -> tuple[str, bool]:
        group = record.batches[index].instances
        invoke_id = invoke_batch(run.request, run.ecs, record.command_id, group,
                                 client_token(run.key, f"invoke-{index}"))
        handed = _hand_over(run, index, invoke_id, skipped if index == 0 else ())
        log.info("request %s: invoked %s on %d instance(s) as %s", record.request_id,
                 record.command_id, len(group), invoke_id)
        return invoke_id, handed

    outcomes = settle([functools.partial(batch, index) for index in todo])
    first = next((o for o in outcomes if isinstance(o, BaseException)), None)
    for position, (index, outcome) in enumerate(zip(todo, outcomes, strict=True)):
        if isinstance(outcome, tuple):
            run.record = run.record.with_batch(index, Batch(
                record.batches[index].instances, INVOKED, outcome[0], handed=outcome[1]))
            run.unwatched = run.unwatched or not outcome[1]
            continue
        if outcome is first and outcomes.index(first) != position:  # never started
            outcome = CloudCallError("InvokeCommand", "NotAttempted", "not attempted: another "
                                     "batch of the request failed first", transient=True)
        else:
            run.errors.append(outcome)
        run.record = run.record.with_batch(index, not_run(record.batches[index], outcome))


def resolve_command(request: CommandRequest, ecs: CloudAssistant, idempotency_key: str,
                    timeout: int) -> str:
    """The request's saved ``CommandId``, or the ad-hoc command created for it (the same one
    again for a redelivery: same ClientToken)."""
    if request.command_id:
        return request.command_id
    return ecs.create_command(
        name=request.name, type_=request.type, content_b64=request.content_b64,
        description=request.description, working_dir=request.working_dir, timeout=timeout,
        enable_parameter=_uses_parameters(request),
        client_token=client_token(idempotency_key, "create"),
    )


def run_batch(request: CommandRequest, ecs: CloudAssistant, group: tuple[str, ...],
              token: str) -> tuple[str, str]:
    """RunCommand of the request's script on one batch: (CommandId, InvokeId)."""
    return ecs.run_command(
        name=request.name, type_=request.type, content_b64=request.content_b64,
        instance_ids=list(group), client_token=token, description=request.description,
        working_dir=request.working_dir, timeout=_timeout(request, None),
        enable_parameter=_uses_parameters(request),
        parameters=dict(request.parameters) or None, username=request.username,
        repeat_mode=request.repeat_mode, frequency=request.frequency)


def invoke_batch(request: CommandRequest, ecs: CloudAssistant, command_id: str,
                 group: tuple[str, ...], token: str) -> str:
    """InvokeCommand on one batch of instances; its InvokeId. A saved command takes the
    request's Timeout and WorkingDir here (an ad-hoc one got them at creation)."""
    return ecs.invoke_command(
        command_id=command_id, instance_ids=list(group), client_token=token,
        parameters=dict(request.parameters) or None,
        timeout=request.timeout if request.command_id else None,
        working_dir=request.working_dir if request.command_id else "",
        username=request.username, repeat_mode=request.repeat_mode,
        frequency=request.frequency,
    )


def clean_up_refused(request: CommandRequest, ecs: CloudAssistant, command_id: str,
                     exc: BaseException) -> None:
    """After a refusal with nothing invoked: the ad-hoc command made for it (``command_id``,
    "" if none) is deleted — a refusal leaves nothing behind."""
    if not command_id or not request.adhoc:
        return
    try:
        ecs.delete_command(command_id)
    except CloudCallError as err:  # the refusal matters more than the clean-up
        log.warning("could not delete command %s after a refused invocation: %s",
                    command_id, err)


def _timeout(request: CommandRequest, plan: Plan | None) -> int:
    if request.timeout is not None:
        return request.timeout
    return (plan.saved_timeout if plan else None) or DEFAULT_TIMEOUT


def _uses_parameters(request: CommandRequest) -> bool:
    """``EnableParameter`` only when the request sends ``Parameters`` (``{}`` for the
    ``{{ACS::…}}`` built-ins alone): with it on, Cloud Assistant reads every ``{{…}}`` of the
    script as a parameter and refuses one that is not a name (``CmdParam.InvalidParamName``,
    CreateCommand's error table) — a Docker or Go template's ``{{.Names}}``. Without
    Parameters the script runs as written."""
    return request.enable_parameter


def _first_followup(request: CommandRequest, settings: Settings, command_id: str, *,
                    source: str, request_id: str, submitted_at: float, timeout: int,
                    batches: int, delete: bool) -> FollowUp:
    """What every batch's first follow-up shares (each sets its invoke id and instances).
    ``delete``: the collector deletes the command when done (CreateCommand's; RunCommand's
    delete themselves)."""
    return FollowUp(
        invoke_id="", command_id=command_id, region=request.region or settings.region,
        pending=(), attempt=1, deadline=submitted_at + timeout + DEADLINE_MARGIN,
        bucket=request.output.bucket or settings.results_bucket,
        prefix=request.output.prefix or settings.results_prefix, request_id=request_id,
        adhoc=delete, source=source, submitted_at=submitted_at, periodic=request.periodic,
        notify=_notify(request), batches=batches, command_name=request.name,
        command_type=request.type, command_excerpt=request.content[:COMMAND_EXCERPT],
    )


def _notify(request: CommandRequest) -> dict[str, str] | None:
    target = request.notify
    if target is None:
        return None
    return {k: v for k, v in (("Url", target.url), ("Queue", target.queue),
                              ("Topic", target.topic)) if v}
