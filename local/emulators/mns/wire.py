"""The MNS wire format: reading and routing a request, and the XML the SDK decodes.

What aliyun-mns-sdk 1.3.0 (package ``mns``) sends and needs back shapes this module:

* the query keys are ``ReceiptHandle`` / ``VisibilityTimeout`` from the SDK
  (``mns/mns_client.py`` ``delete_message``, ``change_message_visibility``) and
  ``receiptHandle`` in the API reference, so keys are matched case-insensitively; the SDK does
  not URL-encode the receipt handle, so values are decoded with ``unquote`` (a ``+`` stays)
  and the emulator's handles are URL-safe;
* the decoders of ``mns/mns_xml_handler.py`` treat every key they list as mandatory (a missing
  one is ``MNSClientNetworkException("RespDataDamaged")``), call ``int()`` on numbers, and the
  list decoders call ``.strip()`` on every child's text, so no element is ever empty;
* ``ErrorDecoder.decodeError`` needs all four of Code, Message, RequestId and HostId under
  ``<Error xmlns="http://mns.aliyuncs.com/doc/v1/">``, else the SDK raises ``RespDataDamaged``
  instead of ``MNSServerException``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from .errors import InvalidArgument, InvalidRequest, MalformedXML, MnsError
from .limits import MAX_LIST, check_range

if TYPE_CHECKING:
    from werkzeug.wrappers import Request

    from local.emulators.base import ServiceError

    from .model import QueueStats, StoredMessage
    from .topics import Subscription, Topic

API_VERSION = "2015-06-06"  # x-mns-version
XMLNS = "http://mns.aliyuncs.com/doc/v1/"
XML_TYPE = "text/xml;charset=utf-8"

Fields = Iterable[tuple[str, object]]
_PROPERTY_ITEMS = {"UserProperties": "PropertyValue", "SystemProperties": "SystemPropertyValue"}


# --- requests ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MnsRequest:
    """One API request as the operations and the signature check read it (``Call.params``)."""

    method: str
    raw_uri: str  # the request-target exactly as sent: the signature covers it
    headers: dict[str, str]  # lower-case names
    body: bytes
    query: dict[str, str]  # lower-case keys
    xml: ET.Element | None
    base_url: str  # http://host[:port], for Location headers and the error's HostId
    names: list[str] = field(default_factory=list)  # queue or topic, then subscription

    def int_query(self, key: str) -> int | None:
        value = self.query.get(key)
        return None if value is None else to_int(key, value)

    def document(self, root: str) -> ET.Element:
        """The body, which must be a ``<root>`` document."""
        if self.xml is None or self.xml.tag != root:
            raise MalformedXML(detail=f"expected a <{root}> document")
        return self.xml

    def values(self, root: str) -> dict[str, str]:
        return children(self.document(root))

    def listing(self) -> tuple[str, str, int]:
        """(prefix, marker, page size) of a List* call, from its ``x-mns-*`` headers."""
        number = self.headers.get("x-mns-ret-number")
        limit = MAX_LIST if number is None else to_int("x-mns-ret-number", number)
        check_range("x-mns-ret-number", limit, 1, MAX_LIST)
        return self.headers.get("x-mns-prefix", ""), self.headers.get("x-mns-marker", ""), limit

    @property
    def with_meta(self) -> bool:
        return self.headers.get("x-mns-with-meta", "").lower() == "true"


def base_url(request: Request) -> str:
    return f"http://{request.host}"


def read_request(request: Request) -> tuple[str, MnsRequest]:
    """The MNS API name of a request and what its operation reads."""
    raw_uri = str(request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
                  or request.full_path)
    body = request.get_data()
    path, _, raw_query = raw_uri.partition("?")
    query = parse_query(raw_query)
    xml = parse_xml(body) if body.strip() else None
    action, names = route(request.method, path, query, xml)
    headers = {k.lower(): v for k, v in request.headers.items()}
    return action, MnsRequest(request.method, raw_uri, headers, body, query, xml,
                              base_url(request), names)


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
        raise InvalidRequest(method=method, path=path)
    return api, parts[1::2]


def parse_xml(body: bytes) -> ET.Element:
    """The request document with namespaces stripped (the SDK sends a default xmlns)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise MalformedXML(detail=str(exc)) from None
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    return root


def children(element: ET.Element) -> dict[str, str]:
    return {child.tag: child.text or "" for child in element}


def to_int(param: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidArgument(param=param, detail=f"an integer, got {value!r}") from None


def to_flag(param: str, value: str) -> int:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise InvalidArgument(param=param, detail=f"True or False, got {value!r}")
    return int(lowered == "true")


def attributes(element: ET.Element | None, known: Iterable[str]) -> dict[str, int]:
    """Queue/topic attributes present in ``element``; unknown elements are ignored."""
    values = children(element) if element is not None else {}
    out: dict[str, int] = {}
    for name in known:
        if name in values:
            convert = to_flag if name == "LoggingEnabled" else to_int
            out[name] = convert(name, values[name])
    return out


def properties(element: ET.Element) -> dict[str, list[dict[str, str]]]:
    """UserProperties / SystemProperties of a message element, kept to be echoed back."""
    out: dict[str, list[dict[str, str]]] = {}
    for kind, item in _PROPERTY_ITEMS.items():
        node = element.find(kind)
        if node is not None:
            out[kind] = [children(value) for value in node.findall(item)]
    return out


# --- values shaped like the service's ----------------------------------------------------
def body_md5(body: str) -> str:
    """MessageBodyMD5: upper-case hex MD5 of the body text as transmitted."""
    return hashlib.md5(body.encode("utf-8")).hexdigest().upper()


def new_message_id(now_ms: int) -> str:
    # Shaped like the real ids (host-ish prefix, ms timestamp, counter), unique per emulator.
    return f"{uuid.uuid4().hex[:16].upper()}-1-{now_ms:X}-{secrets.randbelow(10**9):09d}"


def new_receipt_handle() -> str:
    # URL-safe on purpose: the SDK puts the handle into the query string without quoting it.
    return "1-" + uuid.uuid4().hex


# --- responses ---------------------------------------------------------------------------
def _fields(fields: Fields) -> str:
    return "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in fields)


def document(root: str, inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{XMLNS}">{inner}</{root}>'


def error_document(error: ServiceError, request_id: str, host_id: str) -> str:
    fields = [("Code", error.code), ("Message", error.message), ("RequestId", request_id),
              ("HostId", host_id)]
    return document("Error", _fields(fields))


def flag(value: int | bool) -> str:
    return "True" if value else "False"


def _message(inner: str, root: bool) -> str:
    """A ``<Message>``: the whole document when ``root``, else an item of ``<Messages>``."""
    return document("Message", inner) if root else f"<Message>{inner}</Message>"


def sent(message_id: str, md5: str, root: bool = False) -> str:
    return _message(_fields([("MessageId", message_id), ("MessageBodyMD5", md5)]), root)


def send_error(error: MnsError) -> str:
    fields = [("ErrorCode", error.code), ("ErrorMessage", error.message)]
    return f"<Message>{_fields(fields)}</Message>"


def message(m: StoredMessage, received: bool, root: bool = False) -> str:
    fields: list[tuple[str, object]] = [("MessageId", m.message_id)]
    if received:
        fields.append(("ReceiptHandle", m.receipt_handle))
    fields += [
        ("MessageBodyMD5", m.body_md5), ("MessageBody", m.body),
        ("EnqueueTime", m.enqueue_time),
        # never dequeued (peek only): 0 rather than an empty element, which int() rejects
        ("FirstDequeueTime", m.first_dequeue_time or 0),
    ]
    if received:
        fields.append(("NextVisibleTime", m.next_visible_time))
    fields += [("DequeueCount", m.dequeue_count), ("Priority", m.priority)]
    if m.group_id:
        fields.append(("MessageGroupId", m.group_id))
    props = ""
    for kind, items in m.properties.items():
        entries = "".join(f"<{_PROPERTY_ITEMS[kind]}>{_fields(i.items())}</{_PROPERTY_ITEMS[kind]}>"
                          for i in items)
        props += f"<{kind}>{entries}</{kind}>"
    return _message(_fields(fields) + props, root)


def queue_fields(q: QueueStats) -> list[tuple[str, object]]:
    a = q.queue.attributes
    return [
        ("QueueName", q.queue.name), ("CreateTime", q.queue.create_time),
        ("LastModifyTime", q.queue.last_modify_time), ("DelaySeconds", a["DelaySeconds"]),
        ("MaximumMessageSize", a["MaximumMessageSize"]),
        ("MessageRetentionPeriod", a["MessageRetentionPeriod"]),
        ("VisibilityTimeout", a["VisibilityTimeout"]),
        ("PollingWaitSeconds", a["PollingWaitSeconds"]), ("ActiveMessages", q.active),
        ("InactiveMessages", q.inactive), ("DelayMessages", q.delayed),
        ("LoggingEnabled", flag(a["LoggingEnabled"])),
    ]


def queue(q: QueueStats) -> str:
    return document("Queue", _fields(queue_fields(q)))


def topic_fields(t: Topic) -> list[tuple[str, object]]:
    return [
        ("TopicName", t.name), ("CreateTime", t.create_time),
        ("LastModifyTime", t.last_modify_time),
        ("MaximumMessageSize", t.attributes["MaximumMessageSize"]),
        ("MessageRetentionPeriod", t.retention_seconds), ("MessageCount", t.message_count),
        ("LoggingEnabled", flag(t.attributes["LoggingEnabled"])),
    ]


def topic(t: Topic) -> str:
    return document("Topic", _fields(topic_fields(t)))


def subscription(s: Subscription, owner: str) -> str:
    fields: list[tuple[str, object]] = [
        ("TopicOwner", owner), ("TopicName", s.topic), ("SubscriptionName", s.name),
        ("Endpoint", s.endpoint), ("NotifyStrategy", s.notify_strategy),
        ("NotifyContentFormat", s.notify_content_format),
    ]
    if s.filter_tag:
        fields.append(("FilterTag", s.filter_tag))
    fields += [("CreateTime", s.create_time), ("LastModifyTime", s.last_modify_time)]
    return document("Subscription", _fields(fields))


def listing(root: str, item: str, entries: Iterable[Fields], next_marker: str) -> str:
    inner = "".join(f"<{item}>{_fields(fields)}</{item}>" for fields in entries)
    if next_marker:
        inner += _fields([("NextMarker", next_marker)])
    return document(root, inner)


def change_visibility(handle: str, next_visible: int) -> str:
    fields = [("ReceiptHandle", handle), ("NextVisibleTime", next_visible)]
    return document("ChangeVisibility", _fields(fields))


def delete_errors(failed: Iterable[tuple[str, MnsError]]) -> str:
    inner = "".join(
        "<Error>" + _fields([("ErrorCode", e.code), ("ErrorMessage", e.message),
                             ("ReceiptHandle", handle)]) + "</Error>"
        for handle, e in failed
    )
    return document("Errors", inner)


def account(logging_bucket: str) -> str:
    return document("Account", _fields([("LoggingBucket", logging_bucket)]))


def notification(fmt: str, fields: dict[str, Any]) -> str:
    """A topic message as a queue subscriber receives it, in NotifyContentFormat ``fmt``.

    SIMPLIFIED is the body alone, JSON and XML carry ``fields`` (TopicOwner, TopicName,
    Subscriber, SubscriptionName, MessageId, MessageMD5, MessageTag, Message, PublishTime), per
    https://www.alibabacloud.com/help/doc-detail/27482.htm — whose XML sample has typos
    (``xlmns``, a mismatched closing tag) that are not copied here.
    """
    if fmt == "SIMPLIFIED":
        return str(fields["Message"])
    if fmt == "JSON":
        return json.dumps(fields, ensure_ascii=False)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n'
            f'<Notification xmlns="{XMLNS}">{_fields(fields.items())}</Notification>')
