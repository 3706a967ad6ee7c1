"""The documented MNS limits and the checks that answer ``InvalidArgument`` when one is broken.

Ranges and defaults are those of the MNS API reference: queue attributes from CreateQueue
(https://www.alibabacloud.com/help/en/doc-detail/35129.htm), DelaySeconds 0-604800 and
Priority 1 (highest) to 16, default 8, from SendMessage
(https://www.alibabacloud.com/help/doc-detail/35134.htm), at most 16 messages and 64 KB per
batch from BatchSendMessage
(https://www.alibabacloud.com/help/en/mns/developer-reference/batchsendmessage), a long poll
of at most 30 s from ReceiveMessage
(https://www.alibabacloud.com/help/en/mns/developer-reference/receivemessage), and a
message filtering tag of at most 16 characters from Subscription
(https://alibabacloud.com/help/en/mns/developer-reference/subscription).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import InvalidArgument

QUEUE_DEFAULTS: dict[str, int] = {
    "VisibilityTimeout": 30, "MaximumMessageSize": 65536, "MessageRetentionPeriod": 345600,
    "DelaySeconds": 0, "PollingWaitSeconds": 0, "LoggingEnabled": 0,
}
QUEUE_RANGES: dict[str, tuple[int, int]] = {
    "VisibilityTimeout": (1, 43200),
    "MaximumMessageSize": (1024, 65536),
    "MessageRetentionPeriod": (60, 604800),
    "DelaySeconds": (0, 604800),
    "PollingWaitSeconds": (0, 30),
    "LoggingEnabled": (0, 1),
}
TOPIC_DEFAULTS: dict[str, int] = {"MaximumMessageSize": 65536, "LoggingEnabled": 0}
TOPIC_RANGES: dict[str, tuple[int, int]] = {
    "MaximumMessageSize": (1024, 65536),
    "LoggingEnabled": (0, 1),
}
PRIORITY_RANGE = (1, 16)
DEFAULT_PRIORITY = 8
MAX_BATCH = 16  # messages or receipt handles per batch call
MAX_BATCH_BYTES = 65536
MAX_TAG = 16  # characters of a MessageTag or a FilterTag
MAX_LIST = 1000  # x-mns-ret-number

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,255}$")


def check_name(kind: str, name: str) -> None:
    """A queue, topic or subscription name: 1-256 letters, digits or hyphens, a letter first."""
    if not NAME_RE.match(name):
        raise InvalidArgument(param=kind,
                              detail="1-256 letters, digits or hyphens, starting with a letter")


def check_range(param: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidArgument(param=param, detail=f"between {low} and {high}, got {value}")


def check_attributes(attrs: Mapping[str, int], ranges: Mapping[str, tuple[int, int]],
                     kind: str) -> None:
    """Every attribute known to ``ranges`` (``kind``: queue or topic) and within its range."""
    for attr, value in attrs.items():
        if attr not in ranges:
            raise InvalidArgument(param=attr, detail=f"a known {kind} attribute")
        check_range(attr, value, *ranges[attr])


def creation_attributes(kind: str, name: str, attrs: Mapping[str, int],
                        defaults: Mapping[str, int], ranges: Mapping[str, tuple[int, int]],
                        ) -> dict[str, int]:
    """What a CreateQueue / CreateTopic asks for: a valid name, valid attributes, and the
    defaults for the attributes it leaves out."""
    check_name(f"{kind.capitalize()}Name", name)
    check_attributes(attrs, ranges, kind)
    return {**defaults, **attrs}
