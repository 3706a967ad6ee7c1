"""The webhook's way in: what a signed HTTP delivery must pass before its request is run.

In order — each refusal answered with the one error shape and the logical request's RequestId:

1. size: a body over ``MAX_BODY_BYTES`` is ``413``;
2. media type: anything but JSON, or no ``Content-Type`` at all, is ``415``;
3. signature (``shared.webhook.verify``): missing, wrong or more than 300 s old is ``401``;
4. the intake's validate (``400``) and allow-list (``403``);
5. a ``DryRun`` is answered here (200, ``shared.dryrun``, a selector's matches resolved
   first): it is not a delivery, takes no replay claim and creates nothing;
6. replay: each signed delivery is accepted once. Its signature is claimed as an empty object
   ``{deliveries_prefix}/{signature}`` in the results bucket (``Results.claim``, atomic in
   OSS, so even another function instance's second claim fails): a replay is ``401``. A
   lifecycle rule can expire the markers after the 300 s window; they are tiny either way;
7. the intake's pre-flight (``422``) and dispatch (``503`` with ``Retry-After`` when the cloud
   is briefly unavailable or throttles). A refusal here releases the claim, so a corrected
   retry is not a replay.

The whole delivery may spend ``shared.retry.SUBMIT_PATIENCE`` seconds backing off between
retries of failing calls; past that, the 503 hands the retry to the sender.
"""

from __future__ import annotations

import logging
from typing import Any

from shared import webhook
from shared.clients import Clients
from shared.errors import (
    AssistflowError,
    CloudCallError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from shared.events import HttpEvent, http_response
from shared.intake import Intake
from shared.retry import SUBMIT_PATIENCE, patience, retry_after

log = logging.getLogger("assistflow.http_intake")

MAX_BODY_BYTES = 512 * 1024  # 24 KB of script plus 10,000 instance ids fits easily


def receive(event: bytes | str | dict[str, Any], fc_request_id: str = "",
            clients: Clients | None = None, context: Any = None) -> dict[str, Any]:
    """The HTTP trigger's response (FC 3.0 shape) to one delivery: 202 with the invocations,
    or a refusal; never a 500 for bad input. ``context`` is FC's (its credentials are used)."""
    intake = Intake("http", fc_request_id=fc_request_id, clients=clients, context=context)
    with patience(SUBMIT_PATIENCE):
        return _receive(intake, event, fc_request_id)


def _receive(intake: Intake, event: bytes | str | dict[str, Any], fc_request_id: str
             ) -> dict[str, Any]:
    try:
        http = HttpEvent.parse(event)
        intake.fc_request_id = http.request_id or fc_request_id
        settings = intake.clients.settings
        check_body(http)
        intake.key = webhook.verify(settings.webhook_secret, http.headers, http.body)
        intake.validate(http.body)
        intake.check_allowed()
        if intake.request is not None and intake.request.dry_run:
            # not a delivery: no replay claim taken, nothing created (shared.dryrun)
            return http_response(200, intake.dry_run().to_dict())
        marker = f"{settings.deliveries_prefix}/{intake.key}"
        if not intake.clients.results.claim(marker):
            raise UnauthorizedError("this signed delivery was already accepted; a replay is "
                                    "refused (sign each new delivery with a fresh timestamp, "
                                    "and use ClientToken to make retries safe)")
        try:
            intake.resolve()
            accepted = intake.dispatch(intake.preflight())
        except Exception:
            intake.clients.results.release(marker)  # not accepted: it may be delivered again
            raise
    except AssistflowError as err:
        if err.status >= 500:
            log.error("%s failed: %s", intake.label, err.message)
        else:
            log.info("%s refused (%s): %s", intake.label, err.code, err.message)
        return http_response(err.status, intake.refusal(err), _retry_headers(err))
    except Exception:  # a defect, never bad input: the trace goes to the log, not the answer
        log.exception("%s failed unexpectedly", intake.label)
        return http_response(500, intake.refusal(UnexpectedError()))
    # Some instances could not start yet (NotStarted, Retryable): the same request again (same
    # ClientToken) starts exactly those; the answer is still 202, for what runs.
    waiting = next((n for n in accepted.not_started if n.retryable), None)
    return http_response(202, accepted.to_dict(), None if waiting is None else {
        "Retry-After": str(retry_after(CloudCallError("InvokeCommand", waiting.reason,
                                                      waiting.message, transient=True)))})


class UnexpectedError(AssistflowError):
    """What the sender is told of a defect: no exception text, no trace, no path (Function
    Compute would otherwise answer an uncaught exception with its message and stack trace —
    "Error handling", https://www.alibabacloud.com/help/en/functioncompute/fc/error-handling-1-1)."""

    code = "InternalError"
    status = 500

    def __init__(self) -> None:
        super().__init__("the webhook failed on its side and did not accept the delivery; "
                         "the function log has the details under this RequestId. Sending it "
                         "again is safe (use a ClientToken to make it run once)")


def _retry_headers(err: AssistflowError) -> dict[str, str]:
    """``Retry-After`` on a 503: when trying again (with the same ClientToken) may work —
    past the next minute after ECS throttling, which counts per minute (``shared.retry``)."""
    if isinstance(err, CloudCallError) and err.status == 503:
        return {"Retry-After": str(retry_after(err))}
    return {}


def check_body(http: HttpEvent) -> None:
    """``413`` for a body over ``MAX_BODY_BYTES``, ``415`` for one that is not JSON."""
    if len(http.body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body is {len(http.body)} bytes; the limit is "
                                   f"{MAX_BODY_BYTES}")
    media = http.header("Content-Type").split(";")[0].strip().lower()
    if not media:
        raise UnsupportedMediaTypeError("the delivery has no Content-Type; send "
                                        "Content-Type: application/json")
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(f"Content-Type {media!r} is not JSON; send "
                                        "application/json")
