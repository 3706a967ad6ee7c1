"""``DryRun: true``: what the request would do, with nothing created and nothing recorded.

The answer (HTTP 200) lists every target with its pre-flight verdict — ``Eligible``, or the
reason it cannot run now: ``NotAllowed`` (outside ``AllowedInstances``), ``InstanceNotFound``,
``InstanceNotRunning``, ``AgentNotOnline``, ``OSTypeMismatch`` — from the full pre-flight
(DescribeInstances + DescribeCloudAssistantStatus, whatever the request's size), and the plan:
the instances that would run (all eligible ones; none with ``OnIneligible: Refuse`` if any is
ineligible, which the real request would answer with 422), the batches of at most 100
instances, the waves (``RateControl``) and the error budget.

Nothing is written: no command, no record, no marker, no delivery claim (a webhook DryRun is
not a delivery: the same signed DryRun sent again is answered again). From the request queue
or the timer there is nobody to answer: the verdicts are logged and the message acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.clients import Clients
from shared.fanout import batches_for, fans_out
from shared.preflight import SavedCommand, describe_saved
from shared.request import CommandRequest
from shared.targets import target_verdicts

log = logging.getLogger("assistflow.dryrun")

ELIGIBLE = "Eligible"


@dataclass(frozen=True)
class DryRunAnswer:
    """The 200 of a DryRun (the adapters treat it like an ``Accepted``)."""

    request_id: str
    targets: list[dict[str, Any]]
    plan: dict[str, Any]
    command_type: str = ""

    def raise_if_retryable(self) -> None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"DryRun": True, "RequestId": self.request_id, "Type": self.command_type,
                "Targets": self.targets, "Plan": self.plan}


def dry_run(request: CommandRequest, clients: Clients, request_id: str,
            saved: SavedCommand | None = None,
            known: Mapping[str, Mapping[str, Any]] | None = None) -> DryRunAnswer:
    """Every target's verdict and the plan (module docstring). ``known``: what a selector's
    resolution already said of the targets (``shared.targets.Resolution.facts``)."""
    ecs = clients.ecs_in(request.region)
    command_type = request.type
    if request.command_id:
        saved = saved or describe_saved(ecs, request.command_id)
        command_type = saved.type
    verdicts: dict[str, tuple[str, str]] = {
        v.instance_id: (v.reason, v.message)
        for v in target_verdicts(request, clients, saved=saved, known=known) if not v.eligible}
    eligible = tuple(i for i in request.instance_ids if i not in verdicts)
    runs = eligible if (request.skip_ineligible or not verdicts) else ()
    groups, wave_of = batches_for(request, runs) if runs else ([], ())
    rate = request.rate_control
    plan: dict[str, Any] = {
        "Instances": len(runs), "Eligible": len(eligible), "Ineligible": len(verdicts),
        "Refused": bool(verdicts) and not request.skip_ineligible,
        "Batches": [len(g) for g in groups],
        "Waves": [sum(len(g) for g, w in zip(groups, wave_of, strict=True) if w == k)
                  for k in range(max(wave_of, default=-1) + 1)],
        "DispatchQueue": bool(runs) and fans_out(request, clients, len(runs)),
    }
    if rate is not None:
        plan["RateControl"] = rate.to_json()
        plan["MaxConcurrency"] = rate.concurrency(len(runs))
        plan["ErrorBudget"] = rate.error_budget(len(runs))
    targets = [{"InstanceId": i, "Verdict": verdicts.get(i, (ELIGIBLE, ""))[0],
                **({"Message": verdicts[i][1]} if i in verdicts else {})}
               for i in request.instance_ids]
    answer = DryRunAnswer(request_id, targets, plan, command_type)
    log.info("request %s: dry run, %d eligible, %d not: %s", request_id, len(eligible),
             len(verdicts), ", ".join(f"{i} ({v[0]})" for i, v in list(verdicts.items())[:20]))
    return answer
