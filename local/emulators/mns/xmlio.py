"""Reading request XML and writing response XML in the exact shapes the MNS SDK decodes.

The SDK's decoders treat every key they list as mandatory and call ``int()`` on numbers, and
its list decoders call ``.strip()`` on every child's text, so list entries never contain an
empty element (research/local-emulation.md §1.4).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from . import errors
from .errors import XMLNS
from .model import NewMessage
from .topics import TOPIC_RETENTION_SECONDS

if TYPE_CHECKING:
    from .model import QueueInfo, StoredMessage
    from .topics import SubscriptionInfo, TopicInfo

Fields = Iterable[tuple[str, object]]
_PROPERTY_ITEMS = {"UserProperties": "PropertyValue", "SystemProperties": "SystemPropertyValue"}


# --- requests ----------------------------------------------------------------------------
def parse(body: bytes) -> ET.Element:
    """The request document with namespaces stripped (the SDK sends a default xmlns)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise errors.MalformedXML(detail=str(exc)) from None
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    return root


def children(element: ET.Element) -> dict[str, str]:
    return {child.tag: child.text or "" for child in element}


def to_int(param: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise errors.InvalidArgument(param=param, detail=f"an integer, got {value!r}") from None


def to_flag(param: str, value: str) -> int:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise errors.InvalidArgument(param=param, detail=f"True or False, got {value!r}")
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


def new_message(element: ET.Element) -> NewMessage:
    values = children(element)
    return NewMessage(
        body=values.get("MessageBody", ""),
        delay_seconds=to_int("DelaySeconds", values["DelaySeconds"])
        if "DelaySeconds" in values else None,
        priority=to_int("Priority", values["Priority"]) if "Priority" in values else None,
        group_id=values.get("MessageGroupId", ""),
        properties=properties(element),
    )


# --- responses ---------------------------------------------------------------------------
def _fields(fields: Fields) -> str:
    return "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in fields)


def document(root: str, inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{XMLNS}">{inner}</{root}>'


def flag(value: int | bool) -> str:
    return "True" if value else "False"


def _message(inner: str, root: bool) -> str:
    """A ``<Message>``: the whole document when ``root``, else an item of ``<Messages>``."""
    return document("Message", inner) if root else f"<Message>{inner}</Message>"


def sent(message_id: str, md5: str, root: bool = False) -> str:
    return _message(_fields([("MessageId", message_id), ("MessageBodyMD5", md5)]), root)


def send_error(error: errors.MnsError) -> str:
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


def queue_fields(q: QueueInfo) -> list[tuple[str, object]]:
    a = q.attributes
    return [
        ("QueueName", q.name), ("CreateTime", q.create_time),
        ("LastModifyTime", q.last_modify_time), ("DelaySeconds", a["DelaySeconds"]),
        ("MaximumMessageSize", a["MaximumMessageSize"]),
        ("MessageRetentionPeriod", a["MessageRetentionPeriod"]),
        ("VisibilityTimeout", a["VisibilityTimeout"]),
        ("PollingWaitSeconds", a["PollingWaitSeconds"]), ("ActiveMessages", q.active),
        ("InactiveMessages", q.inactive), ("DelayMessages", q.delayed),
        ("LoggingEnabled", flag(a["LoggingEnabled"])),
    ]


def queue(q: QueueInfo) -> str:
    return document("Queue", _fields(queue_fields(q)))


def topic_fields(t: TopicInfo) -> list[tuple[str, object]]:
    return [
        ("TopicName", t.name), ("CreateTime", t.create_time),
        ("LastModifyTime", t.last_modify_time), ("MaximumMessageSize", t.maximum_message_size),
        ("MessageRetentionPeriod", TOPIC_RETENTION_SECONDS), ("MessageCount", t.message_count),
        ("LoggingEnabled", flag(t.logging_enabled)),
    ]


def topic(t: TopicInfo) -> str:
    return document("Topic", _fields(topic_fields(t)))


def subscription(s: SubscriptionInfo, owner: str) -> str:
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


def delete_errors(failed: Iterable[tuple[str, errors.MnsError]]) -> str:
    inner = "".join(
        "<Error>" + _fields([("ErrorCode", e.code), ("ErrorMessage", e.message),
                             ("ReceiptHandle", handle)]) + "</Error>"
        for handle, e in failed
    )
    return document("Errors", inner)


def account(logging_bucket: str) -> str:
    return document("Account", _fields([("LoggingBucket", logging_bucket)]))
