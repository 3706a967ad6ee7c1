"""HTTP trigger: a signed webhook delivers a command request.

Thin adapter: ``shared.http_intake.receive`` checks size, media type and signature, accepts
each signed delivery once and hands the request to the intake. Answers 202 with the
invocations and where results go; 400 with every violation; 401 unsigned, stale or replayed;
403 outside the allow-list; 413 oversize; 415 not JSON; 422 instances that cannot run it;
503 when the cloud is briefly unavailable (retry); never 500 for bad input.
"""

from __future__ import annotations

from typing import Any

from shared.http_intake import receive


def handler(event: bytes, context: Any) -> dict[str, Any]:
    return receive(event, fc_request_id=getattr(context, "request_id", ""), context=context)
