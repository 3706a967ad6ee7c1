"""Completion notifications: tell the requester an invocation is done, once.

Targets (the request's ``Notify``): ``Url`` receives a POST of the summary signed like the
webhook (``X-Assistflow-Timestamp`` / ``X-Assistflow-Signature`` with the webhook secret, plus
``X-Assistflow-Event: invocation.completed``); ``Queue`` receives the summary as an MNS message;
``Topic`` gets it published. A marker object (``Results.claim``) makes a redelivered final
follow-up skip a notification that was already sent.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from shared import webhook
from shared.clients import Clients, Results
from shared.errors import CloudCallError

log = logging.getLogger("assistflow.notify")

EVENT_HEADER = "X-Assistflow-Event"
CALLBACK_TIMEOUT = 10


def notify_once(clients: Clients, results: Results, marker_key: str, target: dict[str, str],
                summary: dict[str, Any]) -> bool:
    """Send the completion notification unless it was sent before; True if sent now."""
    if not results.claim(marker_key):
        return False
    try:
        _send(clients, target, summary)
    except Exception:
        results.release(marker_key)  # not sent: let the redelivered follow-up try again
        raise
    return True


def _send(clients: Clients, target: dict[str, str], summary: dict[str, Any]) -> None:
    body = json.dumps(summary, ensure_ascii=False, sort_keys=True)
    if "Url" in target:
        _post(target["Url"], body.encode(), clients.settings.webhook_secret)
    elif "Queue" in target:
        clients.queues.send(target["Queue"], body)
    elif "Topic" in target:
        clients.queues.publish(target["Topic"], body)
    log.info("notified %s of %s", next(iter(target.items())), summary.get("InvokeId"))


def _post(url: str, body: bytes, secret: str) -> None:
    headers = {"Content-Type": "application/json", EVENT_HEADER: "invocation.completed"}
    if secret:
        headers.update(webhook.sign(secret, body))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT) as response:
            if response.status >= 300:
                raise CloudCallError("Callback", str(response.status), f"{url} answered "
                                     f"{response.status}", transient=True)
    except urllib.error.HTTPError as exc:
        raise CloudCallError("Callback", str(exc.code), f"{url} answered {exc.code}",
                             transient=exc.code >= 500 or exc.code == 429) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise CloudCallError("Callback", "NetworkError", f"{url}: {exc}", transient=True) from exc
