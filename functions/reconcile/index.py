"""Timer trigger: the reconciler (``shared.reconcile``).

Thin adapter: every few minutes (template.yml ``ReconcileSchedule``) it finishes what a submit
or a collector left half-done — an invocation whose submit died after invoking it, a batch whose
follow-ups were lost, an ad-hoc command left behind — reading the deployment's request records
and Cloud Assistant. The timer's event says nothing it needs; any event (``assistflow invoke
reconcile --event events/timer-reconcile.json``) runs it once. Its work per run is bounded: what
it does not reach waits for the next run.
"""

from __future__ import annotations

from typing import Any

from shared.clients import default_clients
from shared.reconcile import reconcile

DEFAULT_TIMEOUT = 120


def handler(event: bytes, context: Any) -> dict[str, Any]:
    timeout = getattr(getattr(context, "function", None), "timeout", None) or DEFAULT_TIMEOUT
    # no new request once half the Timeout is spent: the one under way still has time to end
    return reconcile(default_clients(context), budget=float(timeout) / 2).to_dict()
