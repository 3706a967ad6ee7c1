"""The MNS HTTP API: authentication, routing and rendering around ``MnsModel``.

What the official SDK (aliyun-mns-sdk 1.3.0) sends and needs back is in
research/local-emulation.md §1; the traps that shape this module:

* the signature covers the request URI exactly as sent, so it is taken from the raw
  request line, never from a decoded path;
* ``content-md5`` is base64 of the *hex* MD5, not RFC 1864;
* ``x-mns-request-id`` is read from a case-sensitive dict, so it is sent in lower case;
* ``Location`` is mandatory on CreateQueue, CreateTopic and Subscribe;
* query keys arrive as ``ReceiptHandle`` from the SDK and ``receiptHandle`` in the docs, so
  they are matched case-insensitively, and values are decoded with ``unquote`` (a ``+`` stays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from local.emulators.base import Clock, EmulatorApp, KeyRing, json_response, new_request_id

from . import errors, xmlio
from .errors import MnsError
from .limits import MAX_LIST, QUEUE_DEFAULTS, TOPIC_DEFAULTS, check_range
from .model import MnsModel, StoredMessage

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

log = logging.getLogger(__name__)

API_VERSION = "2015-06-06"
DEFAULT_ACCOUNT_ID = "1000000000000000"  # TopicOwner / Subscriber in notifications

Reply = tuple[int, str, dict[str, str]]


@dataclass
class Call:
    """One parsed API request."""

    api: str
    names: list[str]  # queue or topic name, then subscription name
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    xml: ET.Element | None
    base_url: str

    def int_query(self, key: str) -> int | None:
        value = self.query.get(key)
        return None if value is None else xmlio.to_int(key, value)


def string_to_sign(method: str, headers: dict[str, str], raw_uri: str) -> str:
    mns = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-mns-"))
    fixed = [headers.get(k, "") for k in ("content-md5", "content-type", "date")]
    return "\n".join([method, *fixed]) + "\n" + mns + raw_uri


def sign(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def parse_query(query: str) -> dict[str, str]:
    out = {}
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            out[unquote(key).lower()] = unquote(value)
    return out


def route(method: str, path: str, query: dict[str, str], xml: ET.Element | None,
          ) -> tuple[str, list[str]]:
    """(MNS API name, path names) for a request; unknown combinations are InvalidRequest."""
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    meta = query.get("metaoverride", "").lower() == "true"
    has = query.__contains__
    table: dict[tuple[str, ...], dict[str, str]] = {
        ("",): {"GET": "GetAccountAttributes", "PUT": "SetAccountAttributes"},
        ("queues",): {"GET": "ListQueue"},
        ("queues", "*"): {"PUT": "SetQueueAttributes" if meta else "CreateQueue",
                          "GET": "GetQueueAttributes", "DELETE": "DeleteQueue"},
        ("queues", "*", "messages"): {
            "POST": "BatchSendMessage" if xml is not None and xml.tag == "Messages"
            else "SendMessage",
            "GET": ("Batch" if has("numofmessages") else "")
            + ("PeekMessage" if query.get("peekonly", "").lower() == "true" else "ReceiveMessage"),
            "DELETE": "DeleteMessage" if has("receipthandle") else "BatchDeleteMessage",
            "PUT": "ChangeMessageVisibility",
        },
        ("topics",): {"GET": "ListTopic"},
        ("topics", "*"): {"PUT": "SetTopicAttributes" if meta else "CreateTopic",
                          "GET": "GetTopicAttributes", "DELETE": "DeleteTopic"},
        ("topics", "*", "messages"): {"POST": "PublishMessage"},
        ("topics", "*", "subscriptions"): {"GET": "ListSubscriptionByTopic"},
        ("topics", "*", "subscriptions", "*"): {
            "PUT": "SetSubscriptionAttributes" if meta else "Subscribe",
            "GET": "GetSubscriptionAttributes", "DELETE": "Unsubscribe",
        },
    }
    if not parts and has("accountmeta"):
        key: tuple[str, ...] = ("",)
    else:
        key = tuple("*" if i % 2 else p for i, p in enumerate(parts))
    api = table.get(key, {}).get(method)
    if api is None:
        raise errors.InvalidRequest(method=method, path=path)
    return api, parts[1::2]


class MnsApp(EmulatorApp):
    """Local Alibaba Cloud MNS (queues and topics) for the unchanged ``mns`` SDK."""

    service = "mns"

    def __init__(self, keyring: KeyRing, state_dir: Path, clock: Clock | None = None, *,
                 account_id: str = DEFAULT_ACCOUNT_ID) -> None:
        super().__init__(keyring, clock)
        self.model = MnsModel(Path(state_dir) / "mns.sqlite3", self.clock, account_id)
        self.account_id = account_id
        self._handlers: dict[str, Callable[[Call], Reply]] = {
            name: getattr(self, "_" + name) for name in _APIS
        }

    # --- EmulatorApp -----------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        request_id = new_request_id()
        base_url = f"http://{request.host}"
        try:
            status, body, headers = self._handle(request, base_url)
        except MnsError as exc:
            log.debug("mns %s %s -> %s", request.method, request.path, exc)
            status, headers = exc.status, {}
            body = errors.render_error(exc, request_id, base_url).decode()
        response = Response(body.encode() if body else b"", status=status)
        if body:
            response.headers["Content-Type"] = "text/xml;charset=utf-8"
        response.headers["x-mns-request-id"] = request_id
        response.headers["x-mns-version"] = API_VERSION
        for name, value in headers.items():
            response.headers[name] = value
        return response

    def dump_state(self) -> dict[str, Any]:
        return self.model.dump()

    def reset_state(self) -> None:
        self.model.reset()

    def close(self) -> None:
        self.model.close()

    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        parts = name.split("/")
        if request.method == "GET" and parts == ["queues"]:
            return json_response({"queues": self.model.queue_overview()})
        if request.method == "GET" and len(parts) == 3 and parts[::2] == ["queues", "messages"]:
            try:
                messages = self.model.queue_messages(parts[1])
            except MnsError as exc:
                return json_response({"error": exc.message}, status=exc.status)
            return json_response({"queue": parts[1], "now": self.model.now_ms(),
                                  "messages": messages})
        if request.method == "GET" and parts == ["topics"]:
            return json_response({"topics": self.model.topic_overview()})
        return super().control_extra(name, request, body)

    # --- request pipeline ------------------------------------------------------------------
    def _handle(self, request: Request, base_url: str) -> Reply:
        raw_uri = str(request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
                      or request.full_path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = request.get_data()
        self._authenticate(request.method, headers, raw_uri)
        if body and headers.get("content-md5"):
            expected = base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()
            if headers["content-md5"].strip() != expected:
                raise errors.InvalidDegist()
        path, _, raw_query = raw_uri.partition("?")
        query = parse_query(raw_query)
        xml = xmlio.parse(body) if body.strip() else None
        api, names = route(request.method, path, query, xml)
        rule = self.faults.take(api)
        if rule is not None:
            if rule.delay:
                time.sleep(rule.delay)
            if rule.code:
                raise MnsError.from_code(rule.code, rule.message or f"Injected fault for {api}.",
                                         rule.status)
        return self._handlers[api](Call(api, names, query, headers, xml, base_url))

    def _authenticate(self, method: str, headers: dict[str, str], raw_uri: str) -> None:
        authorization = headers.get("authorization")
        if not authorization:
            raise errors.MissingAuthorizationHeader()
        scheme, _, credential = authorization.strip().partition(" ")
        access_key_id, sep, signature = credential.strip().partition(":")
        if scheme != "MNS" or not sep or not access_key_id:
            raise errors.InvalidAuthorizationHeader()
        secret = self.keyring.secret_for(access_key_id)
        if secret is None:
            raise errors.InvalidAccessKeyId(access_key_id=access_key_id)
        expected = sign(secret, string_to_sign(method, headers, raw_uri))
        if not hmac.compare_digest(expected, signature.strip()):
            log.debug("mns: signature mismatch, server string to sign %r",
                      string_to_sign(method, headers, raw_uri))
            raise errors.SignatureDoesNotMatch()
        token = headers.get("security-token")
        if not self.keyring.token_ok(access_key_id, token):
            raise errors.AccessDenied(detail=
                "the security token is missing or does not match this STS access key"
                if self.keyring.keys[access_key_id][1] else
                "a security token was sent with a long-term access key"
            )

    @staticmethod
    def _xml(call: Call, root: str) -> ET.Element:
        if call.xml is None or call.xml.tag != root:
            raise errors.MalformedXML(detail=f"expected a <{root}> document")
        return call.xml

    @staticmethod
    def _list_args(call: Call) -> tuple[str, str, int]:
        number = call.headers.get("x-mns-ret-number")
        limit = MAX_LIST if number is None else xmlio.to_int("x-mns-ret-number", number)
        check_range("x-mns-ret-number", limit, 1, MAX_LIST)
        return call.headers.get("x-mns-prefix", ""), call.headers.get("x-mns-marker", ""), limit

    # --- account ---------------------------------------------------------------------------
    def _GetAccountAttributes(self, call: Call) -> Reply:
        return 200, xmlio.account(self.model.get_logging_bucket()), {}

    def _SetAccountAttributes(self, call: Call) -> Reply:
        values = xmlio.children(self._xml(call, "Account"))
        self.model.set_logging_bucket(values.get("LoggingBucket", ""))
        return 204, "", {}

    # --- queues ----------------------------------------------------------------------------
    def _CreateQueue(self, call: Call) -> Reply:
        name = call.names[0]
        attrs = xmlio.attributes(call.xml, QUEUE_DEFAULTS)
        created = self.model.create_queue(name, attrs)
        return (201 if created else 204), "", {"Location": f"{call.base_url}/queues/{name}"}

    def _SetQueueAttributes(self, call: Call) -> Reply:
        self.model.set_queue_attributes(call.names[0], xmlio.attributes(call.xml, QUEUE_DEFAULTS))
        return 204, "", {}

    def _GetQueueAttributes(self, call: Call) -> Reply:
        return 200, xmlio.queue(self.model.get_queue(call.names[0])), {}

    def _DeleteQueue(self, call: Call) -> Reply:
        self.model.delete_queue(call.names[0])
        return 204, "", {}

    def _ListQueue(self, call: Call) -> Reply:
        queues, marker = self.model.list_queues(*self._list_args(call))
        with_meta = call.headers.get("x-mns-with-meta", "").lower() == "true"
        entries = [
            [("QueueURL", f"{call.base_url}/queues/{q.name}"),
             *(xmlio.queue_fields(q) if with_meta else [])]
            for q in queues
        ]
        return 200, xmlio.listing("Queues", "Queue", entries, marker), {}

    # --- messages --------------------------------------------------------------------------
    def _SendMessage(self, call: Call) -> Reply:
        stored = self.model.send_message(
            call.names[0], xmlio.new_message(self._xml(call, "Message"))
        )
        return 201, xmlio.sent(stored.message_id, stored.body_md5, root=True), {}

    def _BatchSendMessage(self, call: Call) -> Reply:
        root = self._xml(call, "Messages")
        messages = [xmlio.new_message(m) for m in root.findall("Message")]
        results = self.model.send_batch(call.names[0], messages)
        inner = "".join(
            xmlio.send_error(r) if isinstance(r, MnsError) else xmlio.sent(r.message_id,
                                                                           r.body_md5)
            for r in results
        )
        # Partial failure: an error status with per-message ErrorCode/ErrorMessage items
        # next to the successful ones (BatchSendMessageDecoder.decodeError). The docs do not
        # pin the status; 500 is what we answer.
        failed = any(isinstance(r, MnsError) for r in results)
        return (500 if failed else 201), xmlio.document("Messages", inner), {}

    def _receive(self, call: Call, count: int) -> list[StoredMessage]:
        return self.model.receive(call.names[0], count, call.int_query("waitseconds"))

    def _ReceiveMessage(self, call: Call) -> Reply:
        message = self._receive(call, 1)[0]
        return 200, xmlio.message(message, received=True, root=True), {}

    def _BatchReceiveMessage(self, call: Call) -> Reply:
        messages = self._receive(call, call.int_query("numofmessages") or 0)
        inner = "".join(xmlio.message(m, received=True) for m in messages)
        return 200, xmlio.document("Messages", inner), {}

    def _PeekMessage(self, call: Call) -> Reply:
        message = self.model.peek(call.names[0], 1)[0]
        return 200, xmlio.message(message, received=False, root=True), {}

    def _BatchPeekMessage(self, call: Call) -> Reply:
        messages = self.model.peek(call.names[0], call.int_query("numofmessages") or 0)
        inner = "".join(xmlio.message(m, received=False) for m in messages)
        return 200, xmlio.document("Messages", inner), {}

    def _DeleteMessage(self, call: Call) -> Reply:
        self.model.delete_message(call.names[0], call.query["receipthandle"])
        return 204, "", {}

    def _BatchDeleteMessage(self, call: Call) -> Reply:
        root = self._xml(call, "ReceiptHandles")
        handles = [(h.text or "").strip() for h in root.findall("ReceiptHandle")]
        failed = self.model.delete_batch(call.names[0], handles)
        # Partial failure is 404 with an <Errors> list (BatchDeleteMessageDecoder.decodeError).
        return (404, xmlio.delete_errors(failed), {}) if failed else (204, "", {})

    def _ChangeMessageVisibility(self, call: Call) -> Reply:
        handle = call.query.get("receipthandle", "")
        timeout = call.int_query("visibilitytimeout")
        if timeout is None:
            raise errors.InvalidArgument(param="VisibilityTimeout", detail="given")
        message = self.model.change_visibility(call.names[0], handle, timeout)
        return 200, xmlio.change_visibility(str(message.receipt_handle),
                                            message.next_visible_time), {}

    # --- topics ----------------------------------------------------------------------------
    def _CreateTopic(self, call: Call) -> Reply:
        name = call.names[0]
        created = self.model.create_topic(name, xmlio.attributes(call.xml, TOPIC_DEFAULTS))
        return (201 if created else 204), "", {"Location": f"{call.base_url}/topics/{name}"}

    def _SetTopicAttributes(self, call: Call) -> Reply:
        self.model.set_topic_attributes(call.names[0], xmlio.attributes(call.xml, TOPIC_DEFAULTS))
        return 204, "", {}

    def _GetTopicAttributes(self, call: Call) -> Reply:
        return 200, xmlio.topic(self.model.get_topic(call.names[0])), {}

    def _DeleteTopic(self, call: Call) -> Reply:
        self.model.delete_topic(call.names[0])
        return 204, "", {}

    def _ListTopic(self, call: Call) -> Reply:
        topics, marker = self.model.list_topics(*self._list_args(call))
        with_meta = call.headers.get("x-mns-with-meta", "").lower() == "true"
        entries = [
            [("TopicURL", f"{call.base_url}/topics/{t.name}"),
             *(xmlio.topic_fields(t) if with_meta else [])]
            for t in topics
        ]
        return 200, xmlio.listing("Topics", "Topic", entries, marker), {}

    def _PublishMessage(self, call: Call) -> Reply:
        values = xmlio.children(self._xml(call, "Message"))
        message_id, md5 = self.model.publish(
            call.names[0], values.get("MessageBody", ""), values.get("MessageTag", "")
        )
        return 201, xmlio.sent(message_id, md5, root=True), {}

    def _Subscribe(self, call: Call) -> Reply:
        topic, name = call.names
        values = xmlio.children(self._xml(call, "Subscription"))
        created = self.model.subscribe(
            topic, name, values.get("Endpoint", ""), values.get("FilterTag", ""),
            values.get("NotifyStrategy", ""), values.get("NotifyContentFormat", ""),
        )
        location = f"{call.base_url}/topics/{topic}/subscriptions/{name}"
        return (201 if created else 204), "", {"Location": location}

    def _SetSubscriptionAttributes(self, call: Call) -> Reply:
        topic, name = call.names
        values = xmlio.children(self._xml(call, "Subscription"))
        self.model.set_subscription_attributes(topic, name, values.get("NotifyStrategy", ""))
        return 204, "", {}

    def _GetSubscriptionAttributes(self, call: Call) -> Reply:
        sub = self.model.get_subscription(*call.names)
        return 200, xmlio.subscription(sub, self.account_id), {}

    def _Unsubscribe(self, call: Call) -> Reply:
        self.model.unsubscribe(*call.names)
        return 204, "", {}

    def _ListSubscriptionByTopic(self, call: Call) -> Reply:
        topic = call.names[0]
        subs, marker = self.model.list_subscriptions(topic, *self._list_args(call))
        entries = [
            [("SubscriptionURL", f"{call.base_url}/topics/{topic}/subscriptions/{s.name}")]
            for s in subs
        ]
        return 200, xmlio.listing("Subscriptions", "Subscription", entries, marker), {}


_APIS = (
    "GetAccountAttributes", "SetAccountAttributes",
    "CreateQueue", "SetQueueAttributes", "GetQueueAttributes", "DeleteQueue", "ListQueue",
    "SendMessage", "BatchSendMessage", "ReceiveMessage", "BatchReceiveMessage", "PeekMessage",
    "BatchPeekMessage", "DeleteMessage", "BatchDeleteMessage", "ChangeMessageVisibility",
    "CreateTopic", "SetTopicAttributes", "GetTopicAttributes", "DeleteTopic", "ListTopic",
    "PublishMessage", "Subscribe", "SetSubscriptionAttributes", "GetSubscriptionAttributes",
    "Unsubscribe", "ListSubscriptionByTopic",
)
