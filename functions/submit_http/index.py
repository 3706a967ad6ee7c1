"""HTTP trigger: a signed webhook delivers a command request.

Thin adapter: parse the FC 3.0 HTTP event, check size, media type and signature, accept each
signed delivery once, then hand the request to ``shared.intake``. Answers 202 with the
invocations and where results go; 400 with every violation; 401 unsigned, stale or replayed;
403 outside the allow-list; 413 oversize; 415 not JSON; 422 instances that cannot run it;
503 when the cloud is briefly unavailable (retry); never 500 for bad input.
"""

from __future__ import annotations

import logging
from typing import Any

from shared import webhook
from shared.clients import default_clients
from shared.deliveries import Deliveries
from shared.errors import AssistflowError, PayloadTooLargeError, UnsupportedMediaTypeError
from shared.events import HttpEvent, http_response
from shared.intake import run
from shared.policy import check_allowed
from shared.request import parse_request

log = logging.getLogger("assistflow.submit_http")

MAX_BODY_BYTES = 512 * 1024  # 24 KB of script plus 10,000 instance ids fits easily


def handler(event: bytes, context: Any) -> dict[str, Any]:
    request_id = getattr(context, "request_id", "")
    try:
        http = HttpEvent.parse(event)
        request_id = http.request_id or request_id
        clients = default_clients()
        if len(http.body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"the body is {len(http.body)} bytes; the limit is "
                                       f"{MAX_BODY_BYTES}")
        media = http.header("Content-Type").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaTypeError(f"Content-Type {media!r} is not JSON; send "
                                            "application/json")
        signature = webhook.verify(clients.settings.webhook_secret, http.headers, http.body)
        request = parse_request(http.body)
        check_allowed(request, clients.settings)
        deliveries = Deliveries(clients.results, clients.settings.deliveries_prefix)
        deliveries.claim(signature)
        try:
            accepted = run(request, clients, source="http", idempotency_key=signature,
                           request_id=request_id)
        except AssistflowError:
            deliveries.release(signature)  # not accepted: the same delivery may try again
            raise
    except AssistflowError as err:
        if err.status >= 500:
            log.error("request %s failed: %s", request_id, err.message)
        else:
            log.info("request %s refused (%s): %s", request_id, err.code, err.message)
        return http_response(err.status, {**err.to_dict(), "RequestId": request_id})
    return http_response(202, accepted.to_dict())
