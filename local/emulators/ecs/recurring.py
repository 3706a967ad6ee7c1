"""Periodic and reboot-triggered invocations: starting their runs when they fall due.

``RepeatMode=Period`` runs the command on every target still ``Scheduled`` each time the
invocation's ``Recurrence`` (``frequency.py``) falls due, the last one ending the schedule;
``NextRebootOnly`` and ``EveryReboot`` run it when an instance restarts (the control API's
``reboot``). Between runs a target of a Period or EveryReboot invocation goes back to
``Scheduled`` (RepeatMode in the InvokeCommand reference,
https://help.aliyun.com/zh/ecs/developer-reference/api-ecs-2014-05-26-invokecommand).

The model holds one ``RecurringRuns``; it reads and writes through the store and hands the
runs it starts back to the model's ``dispatch``. Due times come from the agent's
``Scheduler``, on the emulator's clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

from local.emulators.base import Clock
from local.emulators.ecs.entities import ACTIVE, CommandInvocation, Run
from local.emulators.ecs.errors import InvalidParamFrequency
from local.emulators.ecs.executor import Scheduler
from local.emulators.ecs.frequency import Never, Recurrence, parse_frequency
from local.emulators.ecs.inventory import Instance
from local.emulators.ecs.rules import iso
from local.emulators.ecs.store import EcsStore

ON_REBOOT = ("NextRebootOnly", "EveryReboot")

# (invocation, [(instance, run number)], when the runs were due)
Dispatch = Callable[[CommandInvocation, list[tuple[Instance, int]], float | None], None]


class RecurringRuns:
    def __init__(self, store: EcsStore, scheduler: Scheduler, clock: Clock,
                 instances: Callable[[], dict[str, Instance]], dispatch: Dispatch) -> None:
        self.store = store
        self.scheduler = scheduler
        self.clock = clock
        self._instances = instances  # the fleet as it is now (the inventory can be reloaded)
        self._dispatch = dispatch

    def schedule_next(self, invoke_id: str, recurrence: Recurrence, after: float) -> None:
        """Fire the invocation at its next due time after ``after``, or end its schedule."""
        when = recurrence.next_after(after)
        if when is None:
            self.store.end_schedule(invoke_id)
            return
        self.scheduler.at(when, lambda: self.fire(invoke_id, recurrence, when))

    def fire(self, invoke_id: str, recurrence: Recurrence, when: float,
             only: set[str] | None = None) -> None:
        """One period (or reboot) is due: start a run on every target still Scheduled
        (of ``only`` those instances, for a reboot)."""
        inv = self.store.invocation(invoke_id)
        if inv is None or inv.schedule_done:
            return  # deleted by a reset, or stopped
        last = inv.repeat_mode == "Period" and recurrence.next_after(when) is None
        stamp = iso(when)
        fleet = self._instances()
        with self.store.atomic():
            targets = self.store.targets_of(invoke_id)
            waiting = [t for t in targets if t.status == "Scheduled"]
            if not waiting and not any(t.status in ACTIVE for t in targets):
                self.store.end_schedule(invoke_id)  # every target was stopped: no idle ticking
                return
            runs = [(fleet[t.instance_id], t.repeats + 1) for t in waiting
                    if (only is None or t.instance_id in only) and t.instance_id in fleet]
            self.store.start_runs([Run(invoke_id, inst.InstanceId, number, "Pending", stamp, stamp)
                                   for inst, number in runs])
            if last:
                self.store.end_schedule(invoke_id)
        self._dispatch(inv, runs, when)
        if inv.repeat_mode == "Period" and not last:
            self.schedule_next(invoke_id, recurrence, when)

    def reboot(self, instance_ids: list[str]) -> None:
        """The instances restarted: NextRebootOnly / EveryReboot invocations run on them now."""
        wanted = set(instance_ids)
        for inv in self.store.scheduled_invocations(ON_REBOOT, waiting_only=True):
            self.fire(inv.invoke_id, Never(), self.clock.now(), only=wanted)

    def resume(self, now: float) -> None:
        """After a restart: Period invocations go on from ``now`` (periods missed are skipped)."""
        for inv in self.store.scheduled_invocations(("Period",)):
            try:
                recurrence = parse_frequency(inv.frequency, inv.created_at, 0)
            except InvalidParamFrequency:  # an at() that passed while the cloud was down
                self.store.end_schedule(inv.invoke_id)
                continue
            self.schedule_next(inv.invoke_id, recurrence, now)
