"""MNS topics and subscriptions: the ``Topics`` object ``MnsModel`` holds.

Publishing fans out synchronously: each queue-endpoint subscription whose FilterTag matches
gets the notification in its NotifyContentFormat before PublishMessage answers, so nothing is
ever pending in a topic. Other endpoints (HTTP, mail, SMS) are stored but never called.
``Topics`` knows the queues only through the ``deliver`` callable it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from . import wire
from .errors import (
    InvalidArgument,
    SubscriptionAlreadyExist,
    SubscriptionNotExist,
    TopicAlreadyExist,
    TopicNotExist,
)
from .limits import (
    MAX_TAG,
    TOPIC_DEFAULTS,
    TOPIC_RANGES,
    check_attributes,
    check_name,
    check_range,
    creation_attributes,
)

if TYPE_CHECKING:
    from local.emulators.base import Clock

    from .store import MnsStore

FORMATS = ("XML", "JSON", "SIMPLIFIED")
STRATEGIES = ("BACKOFF_RETRY", "EXPONENTIAL_DECAY_RETRY")

# acs:mns:{region}:{account}:queues/{name} (aliyun-mns-sdk 1.3.0 ``mns/mns_common.py``
# ``TopicHelper.generate_queue_endpoint``), and the
# http(s)://{account}.mns.{region}.aliyuncs.com/queues/{name} form of the samples.
_QUEUE_ENDPOINT = re.compile(
    r"^(?:acs:mns:[^:]*:[^:]*:queues/|https?://[^/]+/queues/)([A-Za-z0-9-]+)/?$"
)

Deliver = Callable[[str, str], bool]  # (queue, body) -> False if there is no such queue


@dataclass(frozen=True)
class Topic:
    """A topic: its attributes (every one of ``TOPIC_DEFAULTS``, by MNS name) and times."""

    name: str
    create_time: int
    last_modify_time: int
    attributes: dict[str, int]
    published: int = 0  # messages published so far (control API only)

    retention_seconds: ClassVar[int] = 86400  # fixed by the service (GetTopicAttributes)
    message_count: ClassVar[int] = 0  # delivery is synchronous: nothing waits in a topic


@dataclass(frozen=True)
class Subscription:
    """A subscription as GetSubscriptionAttributes reports it."""

    topic: str
    name: str
    endpoint: str
    filter_tag: str
    notify_strategy: str
    notify_content_format: str
    create_time: int
    last_modify_time: int

    @property
    def queue(self) -> str | None:
        """The queue the endpoint points at, or None for other endpoint kinds."""
        match = _QUEUE_ENDPOINT.match(self.endpoint.strip())
        return match.group(1) if match else None

    def wants(self, tag: str) -> bool:
        """Whether a message published with ``tag`` reaches this subscription."""
        return not self.filter_tag or self.filter_tag == tag


class Topics:
    """Topic and subscription operations; fan-out goes through ``deliver``."""

    def __init__(self, store: MnsStore, clock: Clock, account_id: str, deliver: Deliver) -> None:
        self.store = store
        self.clock = clock
        self.account_id = account_id
        self.deliver = deliver

    def _topic(self, name: str) -> Topic:
        topic = self.store.topic(name)
        if topic is None:
            raise TopicNotExist(name=name)
        return topic

    def _subscription(self, topic: str, name: str) -> Subscription:
        self._topic(topic)
        subscription = self.store.subscription(topic, name)
        if subscription is None:
            raise SubscriptionNotExist(name=name)
        return subscription

    # --- topics ----------------------------------------------------------------------------
    def create(self, name: str, attrs: dict[str, int]) -> bool:
        """Create ``name``; False if it already exists with the same attributes."""
        wanted = creation_attributes("topic", name, attrs, TOPIC_DEFAULTS, TOPIC_RANGES)
        with self.store.transaction():
            existing = self.store.topic(name)
            if existing is not None:
                if existing.attributes != wanted:
                    raise TopicAlreadyExist(name=name)
                return False
            now = int(self.clock.now())
            self.store.insert_topic(Topic(name, now, now, wanted))
            return True

    def set_attributes(self, name: str, attrs: dict[str, int]) -> None:
        check_attributes(attrs, TOPIC_RANGES, "topic")
        with self.store.transaction():
            self._topic(name)
            self.store.update_topic(name, attrs, int(self.clock.now()))

    def get(self, name: str) -> Topic:
        return self._topic(name)

    def delete(self, name: str) -> None:
        with self.store.transaction():
            self._topic(name)
            self.store.delete_topic(name)

    def list_topics(self, prefix: str = "", marker: str = "", limit: int = 1000,
                    ) -> tuple[list[Topic], str]:
        return self.store.topics(prefix, marker, limit)

    # --- subscriptions ---------------------------------------------------------------------
    def subscribe(self, topic: str, name: str, endpoint: str, filter_tag: str = "",
                  notify_strategy: str = "", notify_content_format: str = "") -> bool:
        """Create subscription ``name``; False if it exists with the same attributes."""
        check_name("SubscriptionName", name)
        if not endpoint:
            raise InvalidArgument(param="Endpoint", detail="a non-empty endpoint")
        strategy = notify_strategy or STRATEGIES[0]
        fmt = notify_content_format or "XML"
        _check_strategy(strategy)
        if fmt not in FORMATS:
            raise InvalidArgument(param="NotifyContentFormat", detail=", ".join(FORMATS))
        check_range("FilterTag length", len(filter_tag), 0, MAX_TAG)
        with self.store.transaction():
            self._topic(topic)
            now = int(self.clock.now())
            wanted = Subscription(topic, name, endpoint, filter_tag, strategy, fmt, now, now)
            existing = self.store.subscription(topic, name)
            if existing is not None:
                if _settings(existing) != _settings(wanted):
                    raise SubscriptionAlreadyExist(name=name)
                return False
            self.store.insert_subscription(wanted)
            return True

    def set_subscription_attributes(self, topic: str, name: str, notify_strategy: str) -> None:
        if notify_strategy:
            _check_strategy(notify_strategy)
        with self.store.transaction():
            self._subscription(topic, name)
            self.store.update_subscription(topic, name, notify_strategy, int(self.clock.now()))

    def get_subscription(self, topic: str, name: str) -> Subscription:
        with self.store.transaction():
            return self._subscription(topic, name)

    def unsubscribe(self, topic: str, name: str) -> None:
        with self.store.transaction():
            self._subscription(topic, name)
            self.store.delete_subscription(topic, name)

    def list_subscriptions(self, topic: str, prefix: str = "", marker: str = "",
                           limit: int = 1000) -> tuple[list[Subscription], str]:
        with self.store.transaction():
            self._topic(topic)
            return self.store.subscriptions(topic, prefix, marker, limit)

    # --- publishing ------------------------------------------------------------------------
    def publish(self, topic: str, body: str, tag: str = "") -> tuple[str, str]:
        """Publish and fan out; returns (MessageId, MessageBodyMD5)."""
        check_range("MessageTag length", len(tag), 0, MAX_TAG)
        md5 = wire.body_md5(body)
        now = int(self.clock.now() * 1000)
        message_id = wire.new_message_id(now)
        with self.store.transaction():
            target = self._topic(topic)
            check_range("MessageBody length", len(body.encode("utf-8")), 1,
                        target.attributes["MaximumMessageSize"])
            for sub in self.store.subscriptions(topic)[0]:
                queue = sub.queue
                if queue is None or not sub.wants(tag):
                    continue
                fields: dict[str, Any] = {
                    "TopicOwner": self.account_id, "TopicName": topic,
                    "Subscriber": self.account_id, "SubscriptionName": sub.name,
                    "MessageId": message_id, "MessageMD5": md5,
                }
                if tag:
                    fields["MessageTag"] = tag
                fields.update({"Message": body, "PublishTime": now})
                # A missing target queue drops the notification, as the service does after
                # its retries run out.
                self.deliver(queue, wire.notification(sub.notify_content_format, fields))
            self.store.count_published(topic)
        return message_id, md5

    def overview(self) -> list[dict[str, Any]]:
        with self.store.transaction():
            topics, _ = self.store.topics()
            subscriptions = self.store.all_subscriptions()
        return [
            {"name": t.name, "published": t.published,
             "subscriptions": [
                 {"name": s.name, "endpoint": s.endpoint, "filter_tag": s.filter_tag,
                  "notify_content_format": s.notify_content_format}
                 for s in subscriptions if s.topic == t.name
             ]}
            for t in topics
        ]


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise InvalidArgument(param="NotifyStrategy", detail=" or ".join(STRATEGIES))


def _settings(s: Subscription) -> tuple[str, str, str, str]:
    """What a repeated Subscribe must match: endpoint, filter, strategy and format."""
    return s.endpoint, s.filter_tag, s.notify_strategy, s.notify_content_format
