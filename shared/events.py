"""Read-only views of the Function Compute 3.0 events assistflow's functions receive.

FC passes ``event`` as bytes (https://www.alibabacloud.com/help/doc-detail/158690.html). Shapes:

* HTTP trigger: ``{"version", "rawPath", "headers", "queryParameters", "body",
  "isBase64Encoded", "requestContext": {"http": {"method", …}, "requestId", …}}``; the handler
  returns ``{"statusCode", "headers", "body", "isBase64Encoded"}``
  (https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/http-trigger-invoking-function).
* MNS queue trigger (EventBridge): a CloudEvent (or a list of them when batching) whose
  ``data`` is ``{"requestId", "messageId", "messageBody"}``
  (https://www.alibabacloud.com/help/en/functioncompute/fc/mns-queue-triggers); ``messageBody``
  is Base64 unless the trigger sets ``IsBase64Decode`` (https://www.alibabacloud.com/help/en/
  functioncompute/fc/developer-reference/api-fc-2023-03-30-struct-sourcemnsparameters).
* Timer trigger: ``{"triggerTime", "triggerName", "payload"}`` with ``payload`` a string
  (https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/formats-of-event-for-different-triggers-1).

The collector's inputs are parsed in ``shared.collector_events``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import AssistflowError


class EventInvalidError(AssistflowError):
    code = "InvalidEvent"
    status = 400


def load_event(event: bytes | str | dict[str, Any] | list[Any]) -> Any:
    """The event as JSON data (FC passes bytes; tests may pass the data itself)."""
    if isinstance(event, (dict, list)):
        return event
    try:
        return json.loads(event)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventInvalidError(f"the event is not JSON: {exc}") from None


@dataclass(frozen=True)
class HttpEvent:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    request_id: str
    source_ip: str

    @classmethod
    def parse(cls, event: bytes | str | dict[str, Any]) -> HttpEvent:
        """The event's parts; ``EventInvalidError`` (400) for anything not shaped like FC's
        event — never another exception, whatever the event holds."""
        data = load_event(event)
        if not isinstance(data, dict) or not isinstance(data.get("requestContext"), dict):
            raise EventInvalidError("not an FC 3.0 HTTP trigger event")
        ctx = data["requestContext"]
        http = ctx.get("http") or {}
        headers, query = data.get("headers") or {}, data.get("queryParameters") or {}
        if not isinstance(http, dict) or not isinstance(headers, dict) \
                or not isinstance(query, dict):
            raise EventInvalidError("not an FC 3.0 HTTP trigger event: requestContext.http, "
                                    "headers and queryParameters must be objects")
        return cls(
            method=str(http.get("method", "")).upper(),
            path=str(http.get("path") or data.get("rawPath") or "/"),
            headers={str(k): str(v) for k, v in headers.items()},
            query={str(k): str(v) for k, v in query.items()},
            body=_body(data.get("body"), bool(data.get("isBase64Encoded"))),
            request_id=str(ctx.get("requestId", "")),
            source_ip=str(http.get("sourceIp", "")),
        )

    def header(self, name: str) -> str:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), "")


def _body(raw: Any, is_base64: bool) -> bytes:
    """The request body as bytes: the event's text (UTF-8), or its Base64 undone."""
    if raw is None:
        return b""
    if not isinstance(raw, str):
        raise EventInvalidError("not an FC 3.0 HTTP trigger event: body must be a string")
    try:
        return base64.b64decode(raw) if is_base64 else raw.encode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise EventInvalidError("the event's body is not " + (
            "Base64" if is_base64 else "text that can be UTF-8 encoded")) from None


def http_response(status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The HTTP trigger's answer: ``body`` as JSON text (UTF-8; ASCII escapes where a string
    could not be sent as UTF-8, such as a lone surrogate echoed from the request)."""
    text = json.dumps(body, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(body)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "isBase64Encoded": False,
        "body": text,
    }


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    body: str  # the message body as text (Base64 already undone when it was encoded)
    request_id: str
    # ``messageBody`` exactly as the event carries it: with IsBase64Decode false (template.yml)
    # the body as sent, so a dead-lettered message can be parked unchanged (shared.deadletter)
    raw_body: str = ""


def queue_messages(event: bytes | str | dict[str, Any] | list[Any]) -> list[QueueMessage]:
    """The MNS messages in an EventBridge MNS-queue event (one CloudEvent or a batch)."""
    data = load_event(event)
    items = data if isinstance(data, list) else [data]
    messages = []
    for item in items:
        payload = item.get("data") if isinstance(item, dict) else None
        if not isinstance(payload, dict) or "messageBody" not in payload:
            raise EventInvalidError("not an MNS queue (EventBridge) event: data.messageBody missing")
        raw = str(payload["messageBody"])
        messages.append(QueueMessage(
            message_id=str(payload.get("messageId", item.get("id", ""))),
            body=_text_body(raw),
            request_id=str(payload.get("requestId", "")),
            raw_body=raw,
        ))
    return messages


def _text_body(body: str) -> str:
    """The body as sent: JSON text stays, Base64 (IsBase64Decode false) is undone."""
    stripped = body.lstrip()
    if stripped.startswith(("{", "[")):
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return body


@dataclass(frozen=True)
class TimerEvent:
    trigger_time: str
    trigger_name: str
    payload: str  # the trigger's configured string

    @classmethod
    def parse(cls, event: bytes | str | dict[str, Any]) -> TimerEvent:
        data = load_event(event)
        if not isinstance(data, dict) or "triggerTime" not in data or "triggerName" not in data:
            raise EventInvalidError("not an FC timer event: triggerTime and triggerName are "
                                    "required")
        payload = data.get("payload", "")
        if not isinstance(payload, str):  # tolerate a payload given as an object
            payload = json.dumps(payload)
        return cls(str(data["triggerTime"]), str(data["triggerName"]), payload)
