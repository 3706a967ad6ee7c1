"""The MNS emulator driven through the official SDK (``mns``), only the endpoint changed."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.mns_http import RequestInternal
from mns.mns_request import (
    GetQueueAttributesRequest,
    GetQueueAttributesResponse,
    SendMessageRequest,
)
from mns.queue import Message, Queue, QueueMeta
from mns.subscription import SubscriptionMeta
from mns.topic import TopicMessage, TopicMeta

from local.emulators.base import Clock, KeyRing
from local.emulators.mns import MnsApp
from local.emulators.server import EmulatorServer

AK, SK = "LOCALTESTAK", "local-test-secret"
STS_AK, STS_SK, TOKEN = "STS.LOCALTEST", "sts-secret", "sts-token-1"
KEYS = KeyRing({AK: (SK, None), STS_AK: (STS_SK, TOKEN)})

# The SDK's own get_attributes() calls its deprecated message-count properties.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated function:DeprecationWarning")


@dataclass
class Mns:
    """A running emulator plus helpers to talk to it."""

    app: MnsApp
    server: EmulatorServer
    state_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    def account(self, ak: str = AK, sk: str = SK, token: str = "") -> Account:
        return Account(self.url, ak, sk, token)

    def queue(self, name: str = "jobs", meta: QueueMeta | None = None) -> Queue:
        queue = self.account().get_queue(name)
        queue.create(meta or QueueMeta())
        return queue

    def control(self, path: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}", data=body, method="POST" if body else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def restart(self) -> None:
        """Stop the server and serve a new app on the same state dir (and the same clock)."""
        self.server.stop()
        self.app = MnsApp(KEYS, self.state_dir, clock=self.app.clock)
        self.server = EmulatorServer(self.app, port=0).start()


@pytest.fixture
def mns(tmp_path: Path) -> Iterator[Mns]:
    app = MnsApp(KEYS, tmp_path, clock=Clock())
    env = Mns(app, EmulatorServer(app, port=0).start(), tmp_path)
    yield env
    env.server.stop()


def server_error(call: Callable[[], Any]) -> MNSServerException:
    with pytest.raises(MNSServerException) as info:
        call()
    return info.value


# --- queues ------------------------------------------------------------------------------
def test_create_queue_returns_location_and_get_attributes_reports_defaults(mns: Mns) -> None:
    url = mns.account().get_queue("jobs").create(QueueMeta())
    meta = mns.account().get_queue("jobs").get_attributes()
    assert url == f"{mns.url}/queues/jobs"
    assert (meta.queue_name, meta.visibility_timeout, meta.maximum_message_size) == (
        "jobs", 30, 65536)
    assert (meta.message_retention_period, meta.delay_seconds, meta.polling_wait_seconds) == (
        345600, 0, 0)
    assert meta.logging_enabled is False


def test_recreate_same_attributes_ok_but_different_is_queue_already_exist(mns: Mns) -> None:
    queue = mns.queue("jobs", QueueMeta(vis_timeout=60))
    assert queue.create(QueueMeta(vis_timeout=60)) == f"{mns.url}/queues/jobs"
    error = server_error(lambda: queue.create(QueueMeta(vis_timeout=61)))
    assert error.type == "QueueAlreadyExist"


def test_set_attributes_changes_only_given_values(mns: Mns) -> None:
    queue = mns.queue()
    queue.set_attributes(QueueMeta(polling_wait_sec=5, logging_enabled=True))
    meta = queue.get_attributes()
    assert (meta.polling_wait_seconds, meta.logging_enabled, meta.visibility_timeout) == (
        5, True, 30)


def test_out_of_range_attribute_is_invalid_argument_naming_it(mns: Mns) -> None:
    queue = mns.account().get_queue("jobs")
    error = server_error(lambda: queue.create(QueueMeta(vis_timeout=50000)))
    assert error.type == "InvalidArgument"
    assert "VisibilityTimeout" in error.message


def test_missing_queue_is_queue_not_exist(mns: Mns) -> None:
    error = server_error(lambda: mns.account().get_queue("nope").send_message(Message("x")))
    assert error.type == "QueueNotExist"


def test_delete_queue_removes_it(mns: Mns) -> None:
    queue = mns.queue()
    queue.delete()
    assert server_error(queue.get_attributes).type == "QueueNotExist"


def test_list_queue_pages_with_prefix_and_marker(mns: Mns) -> None:
    for name in ("a-1", "a-2", "a-3", "b-1"):
        mns.queue(name)
    account = mns.account()
    first, marker = account.list_queue(prefix="a-", ret_number=2)
    rest, last_marker = account.list_queue(prefix="a-", ret_number=2, marker=marker)
    assert first == [f"{mns.url}/queues/a-1", f"{mns.url}/queues/a-2"]
    assert rest == [f"{mns.url}/queues/a-3"]
    assert last_marker == ""


def test_success_responses_carry_lower_case_request_id(mns: Mns) -> None:
    mns.queue()
    client = mns.account().get_client()
    response = GetQueueAttributesResponse()
    client.get_queue_attributes(GetQueueAttributesRequest("jobs"), response)
    assert len(response.get_requestid()) >= 16


# --- messages ----------------------------------------------------------------------------
def test_send_receive_delete_round_trip_with_md5_of_transmitted_body(mns: Mns) -> None:
    queue = mns.queue()
    sent = queue.send_message(Message("héllo <&>"))
    got = queue.receive_message_with_str_body(0)
    assert got.message_body == "héllo <&>"
    assert got.message_id == sent.message_id
    # the SDK base64-encodes on the client; the MD5 is over that transmitted text
    transmitted = base64.b64encode("héllo <&>".encode()).decode()
    assert sent.message_body_md5 == hashlib.md5(transmitted.encode()).hexdigest().upper()
    assert got.message_body_md5 == sent.message_body_md5
    assert (got.dequeue_count, got.priority) == (1, 8)
    assert got.next_visible_time - got.first_dequeue_time == 30_000
    queue.delete_message(got.receipt_handle)
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"


def test_raw_body_is_stored_verbatim(mns: Mns) -> None:
    queue = mns.queue()
    queue.set_encoding(False)
    queue.send_message(Message("<xml>plain & raw</xml>"))
    peeked = mns.control("queues/jobs/messages")["messages"][0]
    assert peeked["body"] == "<xml>plain & raw</xml>"


def test_empty_receive_waits_then_message_not_exist(mns: Mns) -> None:
    queue = mns.queue()
    started = time.monotonic()
    error = server_error(lambda: queue.receive_message(1))
    assert error.type == "MessageNotExist"
    assert error.request_id and error.host_id == mns.url
    assert 0.9 <= time.monotonic() - started < 3


def test_long_poll_wakes_within_half_a_second_of_a_send(mns: Mns) -> None:
    queue = mns.queue()
    result: dict[str, Any] = {}

    def consume() -> None:
        consumer = mns.account().get_queue("jobs")  # Account is not thread-safe: one per thread
        result["message"] = consumer.receive_message_with_str_body(10)
        result["at"] = time.monotonic()

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.3)
    sent_at = time.monotonic()
    queue.send_message(Message("wake up"))
    thread.join(5)
    assert result["message"].message_body == "wake up"
    assert result["at"] - sent_at < 0.5


def test_delayed_message_is_invisible_until_the_clock_reaches_it(mns: Mns) -> None:
    queue = mns.queue()
    queue.send_message(Message("later", delay_seconds=120))
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"
    assert queue.get_attributes().delay_messages == 1
    mns.app.clock.advance(121)
    assert queue.receive_message_with_str_body(0).message_body == "later"


def test_long_poll_wakes_when_clock_advance_makes_a_delayed_message_due(mns: Mns) -> None:
    queue = mns.queue()
    queue.send_message(Message("later", delay_seconds=600))
    threading.Timer(0.2, mns.app.clock.advance, args=(601,)).start()
    started = time.monotonic()
    assert queue.receive_message_with_str_body(10).message_body == "later"
    assert time.monotonic() - started < 2


def test_real_short_delay_is_delivered_by_a_waiting_receive(mns: Mns) -> None:
    queue = mns.queue()
    started = time.monotonic()
    queue.send_message(Message("soon", delay_seconds=1))
    assert queue.receive_message_with_str_body(5).message_body == "soon"
    assert 0.8 <= time.monotonic() - started < 2.5


def test_queue_delay_seconds_applies_when_message_has_none(mns: Mns) -> None:
    queue = mns.queue("jobs", QueueMeta(delay_sec=30))
    queue.send_message(Message("x"))
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"
    mns.app.clock.advance(31)
    assert queue.receive_message(0).dequeue_count == 1


def test_unacknowledged_message_returns_after_visibility_timeout(mns: Mns) -> None:
    queue = mns.queue("jobs", QueueMeta(vis_timeout=30))
    queue.send_message(Message("retry me"))
    first = queue.receive_message(0)
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"
    mns.app.clock.advance(31)
    second = queue.receive_message(0)
    assert second.message_id == first.message_id
    assert second.dequeue_count == 2
    assert second.first_dequeue_time == first.first_dequeue_time
    assert second.receipt_handle != first.receipt_handle


def test_stale_receipt_handle_is_rejected_after_re_receive(mns: Mns) -> None:
    queue = mns.queue("jobs", QueueMeta(vis_timeout=10))
    queue.send_message(Message("x"))
    stale = queue.receive_message(0).receipt_handle
    mns.app.clock.advance(11)
    fresh = queue.receive_message(0).receipt_handle
    assert server_error(lambda: queue.delete_message(stale)).type == "ReceiptHandleError"
    queue.delete_message(fresh)
    assert mns.control("queues/jobs/messages")["messages"] == []


def test_expired_receipt_handle_cannot_delete(mns: Mns) -> None:
    queue = mns.queue("jobs", QueueMeta(vis_timeout=10))
    queue.send_message(Message("x"))
    handle = queue.receive_message(0).receipt_handle
    mns.app.clock.advance(11)
    assert server_error(lambda: queue.delete_message(handle)).type == "ReceiptHandleError"


def test_priority_orders_before_enqueue_time(mns: Mns) -> None:
    queue = mns.queue()
    for body, priority in (("low", 16), ("mid-1", 8), ("high", 1), ("mid-2", 8)):
        queue.send_message(Message(body, priority=priority))
    got = queue.batch_receive_message_with_str_body(16, 0)
    assert [m.message_body for m in got] == ["high", "mid-1", "mid-2", "low"]
    assert [m.priority for m in got] == [1, 8, 8, 16]


def test_batch_send_receive_delete(mns: Mns) -> None:
    queue = mns.queue()
    sent = queue.batch_send_message([Message(f"m{i}") for i in range(5)])
    got = queue.batch_receive_message_with_str_body(3, 0)
    rest = queue.batch_receive_message_with_str_body(16, 0)
    assert len({m.message_id for m in sent}) == 5
    assert [m.message_body for m in got + rest] == [f"m{i}" for i in range(5)]
    queue.batch_delete_message([m.receipt_handle for m in got + rest])
    assert mns.control("queues")["queues"][0]["inactive"] == 0


def test_batch_send_partial_failure_reports_each_message(mns: Mns) -> None:
    queue = mns.queue()
    batch = [Message("ok"), Message("bad", priority=17)]
    error = server_error(lambda: queue.batch_send_message(batch))
    assert error.type == "InvalidArgument"
    assert "MessageId" in error.sub_errors[0]
    assert error.sub_errors[1]["ErrorCode"] == "InvalidArgument"
    assert queue.receive_message_with_str_body(0).message_body == "ok"


def test_batch_delete_with_a_stale_handle_reports_it(mns: Mns) -> None:
    queue = mns.queue()
    queue.batch_send_message([Message("a"), Message("b")])
    handles = [m.receipt_handle for m in queue.batch_receive_message(2, 0)]
    error = server_error(lambda: queue.batch_delete_message([*handles, "1-stale"]))
    assert error.type == "ReceiptHandleError"
    assert [e["ReceiptHandle"] for e in error.sub_errors] == ["1-stale"]
    assert mns.control("queues/jobs/messages")["messages"] == []


def test_peek_does_not_consume(mns: Mns) -> None:
    queue = mns.queue()
    queue.batch_send_message([Message("a"), Message("b")])
    peeked = queue.peek_message_with_str_body()
    batch = queue.batch_peek_message_with_str_body(16)
    assert peeked.message_body == "a" and peeked.dequeue_count == 0
    assert [m.message_body for m in batch] == ["a", "b"]
    assert queue.receive_message(0).dequeue_count == 1


def test_change_visibility_issues_new_handle_and_hides_until_then(mns: Mns) -> None:
    queue = mns.queue()
    queue.send_message(Message("x"))
    got = queue.receive_message(0)
    changed = queue.change_message_visibility(got.receipt_handle, 100)
    assert changed.receipt_handle != got.receipt_handle
    assert int(changed.next_visible_time) >= got.next_visible_time + 60_000
    mns.app.clock.advance(50)
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"
    assert server_error(lambda: queue.delete_message(got.receipt_handle)).type == (
        "ReceiptHandleError")
    queue.delete_message(changed.receipt_handle)


def test_messages_past_retention_disappear(mns: Mns) -> None:
    queue = mns.queue("jobs", QueueMeta(msg_ttl=60))
    queue.send_message(Message("old"))
    mns.app.clock.advance(61)
    assert server_error(queue.peek_message).type == "MessageNotExist"
    assert queue.get_attributes().active_messages == 0


def test_messages_survive_a_restart_with_their_times(mns: Mns) -> None:
    queue = mns.queue()
    queue.send_message(Message("now"))
    queue.send_message(Message("later", delay_seconds=300))
    before = mns.control("queues/jobs/messages")["messages"]
    mns.restart()
    after = mns.control("queues/jobs/messages")["messages"]
    queue = mns.account().get_queue("jobs")
    assert after == before
    visible = queue.receive_message_with_str_body(0)
    assert visible.message_body == "now"
    queue.delete_message(visible.receipt_handle)
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"
    mns.app.clock.advance(301)
    assert queue.receive_message_with_str_body(0).message_body == "later"


# --- authentication ----------------------------------------------------------------------
def test_wrong_secret_is_signature_does_not_match(mns: Mns) -> None:
    mns.queue()
    queue = mns.account(sk="wrong").get_queue("jobs")
    assert server_error(queue.get_attributes).type == "SignatureDoesNotMatch"


def test_unknown_access_key_is_invalid_access_key_id(mns: Mns) -> None:
    queue = mns.account(ak="NOBODY").get_queue("jobs")
    assert server_error(queue.get_attributes).type == "InvalidAccessKeyId"


def test_sts_pair_needs_its_token(mns: Mns) -> None:
    mns.queue()
    without = mns.account(STS_AK, STS_SK).get_queue("jobs")
    wrong = mns.account(STS_AK, STS_SK, "other-token").get_queue("jobs")
    right = mns.account(STS_AK, STS_SK, TOKEN).get_queue("jobs")
    assert server_error(without.get_attributes).type == "AccessDenied"
    assert server_error(wrong.get_attributes).type == "AccessDenied"
    assert right.get_attributes().queue_name == "jobs"


def test_unsigned_request_is_missing_authorization_header(mns: Mns) -> None:
    mns.queue()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{mns.url}/queues/jobs", timeout=5)
    assert info.value.code == 400
    assert "<Code>MissingAuthorizationHeader</Code>" in info.value.read().decode()
    assert info.value.headers["x-mns-request-id"]


def test_bad_content_md5_is_invalid_degist(mns: Mns) -> None:
    mns.queue()
    client = mns.account().get_client()
    request = RequestInternal("POST", "/queues/jobs/messages")
    request.data = b"<Message><MessageBody>x</MessageBody></Message>"
    client.build_header(SendMessageRequest("jobs", "x"), request)
    request.header["content-md5"] = "bm90LXRoZS1tZDU="
    credential = client.credentials_provider.get_credentials()
    request.header["Authorization"] = client.get_signature(
        "POST", request.header, request.uri, credential)
    response = client.http.send_request(request)
    assert response.status == 400
    assert "<Code>InvalidDegist</Code>" in response.data


# --- topics ------------------------------------------------------------------------------
def subscribe_queue(mns: Mns, fmt: str, filter_tag: str = "") -> Queue:
    account = mns.account()
    queue = mns.queue(f"q-{fmt.lower()}")
    queue.set_encoding(False)  # notifications are stored as sent, not base64
    endpoint = f"acs:mns:cn-hangzhou:{mns.app.account_id}:queues/q-{fmt.lower()}"
    account.get_topic("events").get_subscription(f"s-{fmt.lower()}").subscribe(
        SubscriptionMeta(endpoint, notify_content_format=fmt, filter_tag=filter_tag))
    return queue


def test_topic_attributes_and_subscription_attributes(mns: Mns) -> None:
    topic = mns.account().get_topic("events")
    assert topic.create(TopicMeta()) == f"{mns.url}/topics/events"
    subscribe_queue(mns, "XML", filter_tag="red")
    sub = topic.get_subscription("s-xml").get_attributes()
    assert topic.get_attributes().topic_name == "events"
    assert (sub.notify_content_format, sub.filter_tag, sub.notify_strategy) == (
        "XML", "red", "BACKOFF_RETRY")
    assert topic.list_subscription()[0] == [f"{mns.url}/topics/events/subscriptions/s-xml"]


def test_publish_fans_out_simplified_raw_body(mns: Mns) -> None:
    mns.account().get_topic("events").create(TopicMeta())
    queue = subscribe_queue(mns, "SIMPLIFIED")
    mns.account().get_topic("events").publish_message(TopicMessage("ping"))
    assert queue.receive_message(0).message_body == "ping"


def test_publish_fans_out_xml_notification(mns: Mns) -> None:
    topic = mns.account().get_topic("events")
    topic.create(TopicMeta())
    queue = subscribe_queue(mns, "XML")
    published = topic.publish_message(TopicMessage("<ping>", "blue"))
    body = queue.receive_message(0).message_body
    assert f"<MessageId>{published.message_id}</MessageId>" in body
    assert "<Message>&lt;ping&gt;</Message>" in body
    assert f"<MessageMD5>{published.message_body_md5}</MessageMD5>" in body
    for tag in ("TopicOwner", "TopicName", "Subscriber", "SubscriptionName", "MessageTag",
                "PublishTime"):
        assert f"<{tag}>" in body


def test_publish_fans_out_json_notification(mns: Mns) -> None:
    topic = mns.account().get_topic("events")
    topic.create(TopicMeta())
    queue = subscribe_queue(mns, "JSON")
    published = topic.publish_message(TopicMessage("ping", "blue"))
    note = json.loads(queue.receive_message(0).message_body)
    assert note["Message"] == "ping" and note["MessageTag"] == "blue"
    assert note["MessageId"] == published.message_id
    assert (note["TopicName"], note["SubscriptionName"]) == ("events", "s-json")
    assert isinstance(note["PublishTime"], int)


def test_filter_tag_limits_fan_out(mns: Mns) -> None:
    topic = mns.account().get_topic("events")
    topic.create(TopicMeta())
    queue = subscribe_queue(mns, "SIMPLIFIED", filter_tag="red")
    topic.publish_message(TopicMessage("blue one", "blue"))
    topic.publish_message(TopicMessage("red one", "red"))
    assert queue.receive_message(0).message_body == "red one"
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"


def test_missing_topic_and_subscription_errors(mns: Mns) -> None:
    topic = mns.account().get_topic("nope")
    assert server_error(lambda: topic.publish_message(TopicMessage("x"))).type == "TopicNotExist"
    topic.create(TopicMeta())
    sub = topic.get_subscription("nobody")
    assert server_error(sub.get_attributes).type == "SubscriptionNotExist"


# --- emulator control --------------------------------------------------------------------
def test_fault_injection_fails_send_message_once(mns: Mns) -> None:
    queue = mns.queue()
    mns.control("faults", {"action": "SendMessage", "code": "InternalError", "status": 500})
    error = server_error(lambda: queue.send_message(Message("x")))
    assert error.type == "InternalError"
    queue.send_message(Message("y"))
    assert queue.receive_message_with_str_body(0).message_body == "y"


def test_calls_are_counted_per_action_refused_ones_included(mns: Mns) -> None:
    queue = mns.queue()
    queue.send_message(Message("x"))
    server_error(mns.account(sk="wrong").get_queue("jobs").get_attributes)
    assert mns.control("calls")["calls"] == {
        "CreateQueue": 1, "SendMessage": 1, "GetQueueAttributes": 1}


def test_control_peek_view_counts_states_without_consuming(mns: Mns) -> None:
    queue = mns.queue()
    queue.send_message(Message("a"))
    queue.send_message(Message("b", delay_seconds=60))
    queue.send_message(Message("c"))
    queue.receive_message(0)
    overview = mns.control("queues")["queues"][0]
    messages = mns.control("queues/jobs/messages")["messages"]
    assert (overview["name"], overview["active"], overview["inactive"], overview["delayed"]) == (
        "jobs", 1, 1, 1)
    assert {m["state"] for m in messages} == {"active", "inactive", "delayed"}
    assert {m["dequeue_count"] for m in messages} == {0, 1}
    assert all(m["enqueue_time"] and m["next_visible_time"] for m in messages)
    assert queue.receive_message(0).dequeue_count == 1
