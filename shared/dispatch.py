"""Turn an accepted command request into Cloud Assistant work, exactly once.

A request that fits one call (at most 100 instances) costs one ECS call: a one-off script goes
out as ``RunCommand`` (created, invoked, and deleted by Cloud Assistant when it is over), a
saved command as ``InvokeCommand`` (with a DescribeCommands beside it when the deadline needs
the saved Timeout); a periodic script is created (CreateCommand) and invoked, its command
deleted by the collector once the schedule ends. Only when that call is refused for its
instances does pre-flight look at them (``shared.preflight.refused``), for the 422 or to run
again without the ineligible ones.
A larger request is checked up front, its command created once, and its batches invoked side by
side (``shared.parallel``). Then, per batch: record the invocation and queue its first
follow-up for the collector (both at once).

Every call carries a ``ClientToken`` derived from the request's idempotency key, so a
redelivered trigger gets the same command and the same invocations back instead of running the
script twice; the call made again without ineligible instances keeps its batch's token (a
refused call leaves its token unused: ECS keeps a token's answer for a request it processed —
"How to ensure idempotence", https://www.alibabacloud.com/help/en/doc-detail/25693.html — and a
refused one was not). A refusal cleans up after itself: nothing is left behind.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import cast

from shared.clients import Clients, CloudAssistant
from shared.config import Settings
from shared.errors import AssistflowError, CloudCallError
from shared.followup import DEADLINE_MARGIN, FollowUp, first_delay
from shared.parallel import run_all, settle
from shared.preflight import BATCH_SIZE, Ineligible, Plan, refused, saved_command
from shared.record import write_record
from shared.request import DEFAULT_TIMEOUT, CommandRequest
from shared.results import dumps, invoke_prefix, result_key, skipped_document

log = logging.getLogger("assistflow.dispatch")

MAX_FOLLOWUP_BYTES = 60 * 1024  # MNS takes 64 KB per message


@dataclass(frozen=True)
class Accepted:
    """What the caller is told: which invocations run and where their results will be."""

    command_id: str
    invoke_ids: tuple[str, ...]
    locations: tuple[str, ...]
    request_id: str
    skipped: tuple[Ineligible, ...] = ()
    batches: tuple[tuple[str, ...], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "InvokeId": self.invoke_ids[0],
            "InvokeIds": list(self.invoke_ids),
            "CommandId": self.command_id,
            "Results": list(self.locations),
            "RequestId": self.request_id,
        }
        if self.skipped:
            body["Skipped"] = [{"InstanceId": i.instance_id, "Reason": i.reason,
                                "Message": i.message} for i in self.skipped]
        return body


def client_token(idempotency_key: str, purpose: str) -> str:
    """A ≤64-character ASCII ``ClientToken`` for one call made on behalf of one request."""
    return hashlib.sha256(f"{idempotency_key}|{purpose}".encode()).hexdigest()


def batches(instance_ids: tuple[str, ...], size: int = BATCH_SIZE) -> list[tuple[str, ...]]:
    return [instance_ids[i:i + size] for i in range(0, len(instance_ids), size)]


def dispatch(request: CommandRequest, plan: Plan, clients: Clients, *, source: str,
             idempotency_key: str, request_id: str,
             now: Callable[[], float] = time.time) -> Accepted:
    """Invoke the command on the plan's instances and record each batch.

    ``idempotency_key`` identifies the logical request (its ``ClientToken`` if given, else the
    trigger's key); ``request_id`` is the id derived from it. Raises ``CloudCallError`` if
    Cloud Assistant refuses, ``IneligibleInstancesError`` if pre-flight must.
    """
    ecs = clients.ecs_in(request.region)
    submitted_at = now()
    if len(plan.instance_ids) <= BATCH_SIZE:
        command_id, invoke_ids, plan, deletes_itself = _one_call(request, plan, ecs,
                                                                 idempotency_key)
        groups = [plan.instance_ids]
    else:
        command_id, invoke_ids, groups = _batches(request, plan, ecs, clients, idempotency_key,
                                                  submitted_at, source, request_id)
        deletes_itself = False
    first = _first_followup(request, clients.settings, command_id, source=source,
                            request_id=request_id, submitted_at=submitted_at,
                            timeout=_timeout(request, plan), batches=len(groups),
                            delete=request.adhoc and not deletes_itself)
    if len(groups) == 1:
        record_and_follow_up(clients, _for_batch(first, clients.settings, invoke_ids[0],
                                                 groups[0], events_reach(request, clients.settings)),
                             plan.skipped)
        log.info("request %s: %s on %d instance(s) as %s", request_id, command_id,
                 len(groups[0]), invoke_ids[0])
    return Accepted(
        command_id=command_id,
        invoke_ids=tuple(invoke_ids),
        locations=tuple(f"oss://{first.bucket}/{invoke_prefix(first.prefix, i)}"
                        for i in invoke_ids),
        request_id=request_id,
        skipped=plan.skipped,
        batches=tuple(groups),
    )


def events_reach(request: CommandRequest, settings: Settings) -> bool:
    """Will this command's TaskCompleted events reach the collector? The trigger's filter takes
    only commands named ``settings.events_command_prefix…`` (template.yml: EventsCommandPrefix,
    by default the request's default Name); a saved command's name is not looked up, so saved
    commands, like other names, are collected by follow-ups alone."""
    return not request.command_id and request.name.startswith(settings.events_command_prefix)


def _one_call(request: CommandRequest, plan: Plan, ecs: CloudAssistant, key: str
              ) -> tuple[str, list[str], Plan, bool]:
    """One batch: RunCommand for a one-off script, else InvokeCommand (of the saved command,
    or of the command created for a periodic script: RunCommand's own command is deleted when
    the run is over, and a schedule outlives its first run); pre-flight if refused.
    (CommandId, [InvokeId], plan, whether the command deletes itself)."""
    runs = request.adhoc and not request.periodic
    command_id = "" if runs else resolve_command(request, ecs, key, _timeout(request, plan))
    token = client_token(key, "run-0" if runs else "invoke-0")

    def attempt(targets: tuple[str, ...]) -> tuple[str, str]:
        if runs:
            return run_batch(request, ecs, targets, token)
        return command_id, invoke_batch(request, ecs, command_id, targets, token)

    try:
        (command_id, invoke_id), plan = _attempt_or_check(request, plan, ecs, attempt)
    except AssistflowError as exc:
        if command_id:  # a refusal leaves nothing behind
            clean_up_refused(request, ecs, command_id, exc, invoked=False)
        raise
    return command_id, [invoke_id], plan, runs


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
    if isinstance(saved, BaseException):  # invoked, but without the deadline it needs
        raise saved
    return answer, plan


def _batches(request: CommandRequest, plan: Plan, ecs: CloudAssistant, clients: Clients,
             key: str, submitted_at: float, source: str, request_id: str
             ) -> tuple[str, list[str], list[tuple[str, ...]]]:
    """A request of several batches (checked up front): one command, the batches side by
    side, each recorded with its follow-up as soon as it is invoked."""
    command_id = resolve_command(request, ecs, key, _timeout(request, plan))
    groups = batches(plan.instance_ids)
    first = _first_followup(request, clients.settings, command_id, source=source,
                            request_id=request_id, submitted_at=submitted_at,
                            timeout=_timeout(request, plan), batches=len(groups),
                            delete=request.adhoc)

    def batch(index: int) -> str:
        group = groups[index]
        invoke_id = invoke_batch(request, ecs, command_id, group,
                                 client_token(key, f"invoke-{index}"))
        record_and_follow_up(clients, _for_batch(first, clients.settings, invoke_id, group,
                                                 events_reach(request, clients.settings)),
                             plan.skipped if index == 0 else ())
        log.info("request %s: invoked %s on %d instance(s) as %s", request_id, command_id,
                 len(group), invoke_id)
        return invoke_id

    outcomes = settle([functools.partial(batch, index) for index in range(len(groups))])
    invoke_ids = [o for o in outcomes if isinstance(o, str)]
    failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
    if isinstance(failure, AssistflowError):
        clean_up_refused(request, ecs, command_id, failure, invoked=bool(invoke_ids))
    if failure is not None:
        raise failure
    return command_id, invoke_ids, groups


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


def record_and_follow_up(clients: Clients, followup: FollowUp,
                         skipped: tuple[Ineligible, ...] = ()) -> None:
    """Record the invocation and queue its first follow-up, side by side; the first batch
    also carries (and stores a result.json for) the instances pre-flight skipped."""
    calls: list[Callable[[], object]] = []
    if skipped:
        followup = _with_skipped(followup, skipped)
        calls += _skipped_writes(clients, followup, skipped)
    calls.append(lambda: write_record(clients.results, followup))
    calls.append(lambda: clients.queues.send(clients.settings.followup_queue,
                                             followup.to_json(), first_delay(followup.watchdog)))
    run_all(calls)


def clean_up_refused(request: CommandRequest, ecs: CloudAssistant, command_id: str,
                     exc: AssistflowError, invoked: bool) -> None:
    """After a failed InvokeCommand: a refusal (the cloud's, or pre-flight's) leaves nothing
    behind, so the ad-hoc command made for it is deleted if nothing was invoked. A transient
    failure keeps the command: the caller's retry (same idempotency key, so the same
    ClientToken) gets this CommandId back from CreateCommand and must find it still there."""
    transient = isinstance(exc, CloudCallError) and exc.transient
    if invoked or not request.adhoc or transient:
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
        notify=_notify(request), batches=batches,
    )


def _for_batch(first: FollowUp, settings: Settings, invoke_id: str, group: tuple[str, ...],
               events: bool) -> FollowUp:
    """``events``: the command's TaskCompleted events reach the collector (``events_reach``);
    then small batches are stored by events, and the follow-ups only watch."""
    watchdog = events and settings.completion_events and \
        len(group) <= settings.events_max_instances
    return replace(first, invoke_id=invoke_id, pending=group, watchdog=watchdog)


def _notify(request: CommandRequest) -> dict[str, str] | None:
    target = request.notify
    if target is None:
        return None
    return {k: v for k, v in (("Url", target.url), ("Queue", target.queue),
                              ("Topic", target.topic)) if v}


def _with_skipped(followup: FollowUp, skipped: tuple[Ineligible, ...]) -> FollowUp:
    """Carry the skipped instances with the first batch, as many as fit in one message."""
    pairs = tuple((i.instance_id, i.reason) for i in skipped)
    candidate = replace(followup, skipped=pairs, skipped_count=len(pairs))
    while len(candidate.to_json()) > MAX_FOLLOWUP_BYTES and candidate.skipped:
        candidate = replace(candidate, skipped=candidate.skipped[: len(candidate.skipped) // 2])
    return candidate


def _skipped_writes(clients: Clients, followup: FollowUp,
                    skipped: tuple[Ineligible, ...]) -> list[Callable[[], object]]:
    """A ``result.json`` per skipped instance, so every target has a result in OSS."""
    results = clients.results.named(followup.bucket)
    def write(item: Ineligible) -> None:
        results.put(result_key(followup.prefix, followup.invoke_id, item.instance_id),
                    dumps(skipped_document(item.instance_id, item.reason, item.message,
                                           followup)), "application/json")

    return [functools.partial(write, item) for item in skipped]
