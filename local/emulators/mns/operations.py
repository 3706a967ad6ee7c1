"""The MNS API actions: one function per action, registered under its MNS API name.

Each reads the parsed request (``call.params``, a ``wire.MnsRequest``), calls the model and
returns a ``Reply``: status, XML body (``wire``) and extra headers. Statuses follow the MNS API
reference; aliyun-mns-sdk 1.3.0 accepts any 2xx/3xx (``MNSClient.check_status``) but reads
``Location`` after CreateQueue, CreateTopic and Subscribe and fails without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from local.emulators.base import Call, Operations

from . import wire
from .errors import InvalidArgument, MnsError
from .limits import QUEUE_DEFAULTS, TOPIC_DEFAULTS
from .model import MnsModel, NewMessage

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    from .model import StoredMessage
    from .wire import MnsRequest

OPERATIONS: Operations[MnsModel] = Operations()


@dataclass(frozen=True)
class Reply:
    """An operation's answer; ``MnsApp.render`` adds the request id and version headers."""

    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def _created(created: bool, location: str) -> Reply:
    """Create* and Subscribe: 201 when made, 204 when it already existed just so."""
    return Reply(201 if created else 204, headers={"Location": location})


NO_CONTENT = Reply(204)


# --- account -----------------------------------------------------------------------------
@OPERATIONS.register("GetAccountAttributes")
def get_account_attributes(model: MnsModel, call: Call) -> Reply:
    return Reply(200, wire.account(model.get_logging_bucket()))


@OPERATIONS.register("SetAccountAttributes")
def set_account_attributes(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    model.set_logging_bucket(request.values("Account").get("LoggingBucket", ""))
    return NO_CONTENT


# --- queues ------------------------------------------------------------------------------
@OPERATIONS.register("CreateQueue")
def create_queue(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    name = request.names[0]
    created = model.create_queue(name, wire.attributes(request.xml, QUEUE_DEFAULTS))
    return _created(created, f"{request.base_url}/queues/{name}")


@OPERATIONS.register("SetQueueAttributes")
def set_queue_attributes(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    model.set_queue_attributes(request.names[0], wire.attributes(request.xml, QUEUE_DEFAULTS))
    return NO_CONTENT


@OPERATIONS.register("GetQueueAttributes")
def get_queue_attributes(model: MnsModel, call: Call) -> Reply:
    return Reply(200, wire.queue(model.get_queue(call.params.names[0])))


@OPERATIONS.register("DeleteQueue")
def delete_queue(model: MnsModel, call: Call) -> Reply:
    model.delete_queue(call.params.names[0])
    return NO_CONTENT


@OPERATIONS.register("ListQueue")
def list_queue(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    queues, marker = model.list_queues(*request.listing())
    entries = [
        [("QueueURL", f"{request.base_url}/queues/{q.queue.name}"),
         *(wire.queue_fields(q) if request.with_meta else [])]
        for q in queues
    ]
    return Reply(200, wire.listing("Queues", "Queue", entries, marker))


# --- messages ----------------------------------------------------------------------------
def _new_message(element: ET.Element) -> NewMessage:
    values = wire.children(element)
    delay, priority = values.get("DelaySeconds"), values.get("Priority")
    return NewMessage(
        body=values.get("MessageBody", ""),
        delay_seconds=None if delay is None else wire.to_int("DelaySeconds", delay),
        priority=None if priority is None else wire.to_int("Priority", priority),
        group_id=values.get("MessageGroupId", ""),
        properties=wire.properties(element),
    )


@OPERATIONS.register("SendMessage")
def send_message(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    stored = model.send_message(request.names[0], _new_message(request.document("Message")))
    return Reply(201, wire.sent(stored.message_id, stored.body_md5, root=True))


@OPERATIONS.register("BatchSendMessage")
def batch_send_message(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    messages = [_new_message(m) for m in request.document("Messages").findall("Message")]
    results = model.send_batch(request.names[0], messages)
    inner = "".join(
        wire.send_error(r) if isinstance(r, MnsError) else wire.sent(r.message_id, r.body_md5)
        for r in results
    )
    # Partial failure: an error status with per-message ErrorCode/ErrorMessage items next to
    # the successful ones (aliyun-mns-sdk ``BatchSendMessageDecoder.decodeError``). The docs do
    # not pin the status; 500 is what the emulator answers.
    failed = any(isinstance(r, MnsError) for r in results)
    return Reply(500 if failed else 201, wire.document("Messages", inner))


def _messages(messages: list[StoredMessage], received: bool) -> str:
    return wire.document("Messages", "".join(wire.message(m, received) for m in messages))


def _receive(model: MnsModel, request: MnsRequest, count: int) -> list[StoredMessage]:
    return model.receive(request.names[0], count, request.int_query("waitseconds"))


@OPERATIONS.register("ReceiveMessage")
def receive_message(model: MnsModel, call: Call) -> Reply:
    message = _receive(model, call.params, 1)[0]
    return Reply(200, wire.message(message, received=True, root=True))


@OPERATIONS.register("BatchReceiveMessage")
def batch_receive_message(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    messages = _receive(model, request, request.int_query("numofmessages") or 0)
    return Reply(200, _messages(messages, received=True))


@OPERATIONS.register("PeekMessage")
def peek_message(model: MnsModel, call: Call) -> Reply:
    message = model.peek(call.params.names[0], 1)[0]
    return Reply(200, wire.message(message, received=False, root=True))


@OPERATIONS.register("BatchPeekMessage")
def batch_peek_message(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    messages = model.peek(request.names[0], request.int_query("numofmessages") or 0)
    return Reply(200, _messages(messages, received=False))


@OPERATIONS.register("DeleteMessage")
def delete_message(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    model.delete_message(request.names[0], request.query["receipthandle"])
    return NO_CONTENT


@OPERATIONS.register("BatchDeleteMessage")
def batch_delete_message(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    handles = [(h.text or "").strip()
               for h in request.document("ReceiptHandles").findall("ReceiptHandle")]
    failed = model.delete_batch(request.names[0], handles)
    # Partial failure is 404 with an <Errors> list (aliyun-mns-sdk
    # ``BatchDeleteMessageDecoder.decodeError``).
    return Reply(404, wire.delete_errors(failed)) if failed else NO_CONTENT


@OPERATIONS.register("ChangeMessageVisibility")
def change_message_visibility(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    timeout = request.int_query("visibilitytimeout")
    if timeout is None:
        raise InvalidArgument(param="VisibilityTimeout", detail="given")
    message = model.change_visibility(request.names[0], request.query.get("receipthandle", ""),
                                      timeout)
    return Reply(200, wire.change_visibility(str(message.receipt_handle),
                                             message.next_visible_time))


# --- topics ------------------------------------------------------------------------------
@OPERATIONS.register("CreateTopic")
def create_topic(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    name = request.names[0]
    created = model.topics.create(name, wire.attributes(request.xml, TOPIC_DEFAULTS))
    return _created(created, f"{request.base_url}/topics/{name}")


@OPERATIONS.register("SetTopicAttributes")
def set_topic_attributes(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    model.topics.set_attributes(request.names[0], wire.attributes(request.xml, TOPIC_DEFAULTS))
    return NO_CONTENT


@OPERATIONS.register("GetTopicAttributes")
def get_topic_attributes(model: MnsModel, call: Call) -> Reply:
    return Reply(200, wire.topic(model.topics.get(call.params.names[0])))


@OPERATIONS.register("DeleteTopic")
def delete_topic(model: MnsModel, call: Call) -> Reply:
    model.topics.delete(call.params.names[0])
    return NO_CONTENT


@OPERATIONS.register("ListTopic")
def list_topic(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    topics, marker = model.topics.list_topics(*request.listing())
    entries = [
        [("TopicURL", f"{request.base_url}/topics/{t.name}"),
         *(wire.topic_fields(t) if request.with_meta else [])]
        for t in topics
    ]
    return Reply(200, wire.listing("Topics", "Topic", entries, marker))


@OPERATIONS.register("PublishMessage")
def publish_message(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    values = request.values("Message")
    message_id, md5 = model.topics.publish(request.names[0], values.get("MessageBody", ""),
                                           values.get("MessageTag", ""))
    return Reply(201, wire.sent(message_id, md5, root=True))


@OPERATIONS.register("Subscribe")
def subscribe(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    topic, name = request.names
    values = request.values("Subscription")
    created = model.topics.subscribe(
        topic, name, values.get("Endpoint", ""), values.get("FilterTag", ""),
        values.get("NotifyStrategy", ""), values.get("NotifyContentFormat", ""),
    )
    return _created(created, f"{request.base_url}/topics/{topic}/subscriptions/{name}")


@OPERATIONS.register("SetSubscriptionAttributes")
def set_subscription_attributes(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    topic, name = request.names
    strategy = request.values("Subscription").get("NotifyStrategy", "")
    model.topics.set_subscription_attributes(topic, name, strategy)
    return NO_CONTENT


@OPERATIONS.register("GetSubscriptionAttributes")
def get_subscription_attributes(model: MnsModel, call: Call) -> Reply:
    subscription = model.topics.get_subscription(*call.params.names)
    return Reply(200, wire.subscription(subscription, model.account_id))


@OPERATIONS.register("Unsubscribe")
def unsubscribe(model: MnsModel, call: Call) -> Reply:
    model.topics.unsubscribe(*call.params.names)
    return NO_CONTENT


@OPERATIONS.register("ListSubscriptionByTopic")
def list_subscription_by_topic(model: MnsModel, call: Call) -> Reply:
    request: MnsRequest = call.params
    topic = request.names[0]
    subscriptions, marker = model.topics.list_subscriptions(topic, *request.listing())
    entries = [[("SubscriptionURL", f"{request.base_url}/topics/{topic}/subscriptions/{s.name}")]
               for s in subscriptions]
    return Reply(200, wire.listing("Subscriptions", "Subscription", entries, marker))
