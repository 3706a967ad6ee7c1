"""The canonical events parse, and follow-ups round-trip and back off."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from shared.events import EventInvalidError, HttpEvent, queue_messages
from shared.followup import MAX_DELAY, FollowUp, FollowUpInvalidError, delay_for
from shared.request import parse_request

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_http_event_fixture_parses_to_a_valid_request() -> None:
    event = HttpEvent.parse((EVENTS / "http-submit.json").read_bytes())
    assert event.method == "POST" and event.path == "/"
    assert event.header("content-type") == "application/json"
    assert parse_request(event.body).type == "RunShellScript"


def test_http_event_base64_body_is_decoded() -> None:
    data = json.loads((EVENTS / "http-submit.json").read_text())
    data.update(body=base64.b64encode(b"\xff\x00raw").decode(), isBase64Encoded=True)
    assert HttpEvent.parse(json.dumps(data).encode()).body == b"\xff\x00raw"


def test_followup_event_fixture_round_trips() -> None:
    (message,) = queue_messages((EVENTS / "mns-followup.json").read_bytes())
    followup = FollowUp.from_json(message.body)
    assert followup.pending == ("i-local00000000000001",)
    assert FollowUp.from_json(followup.to_json()) == followup


def test_queue_bodies_in_base64_and_batches_are_understood() -> None:
    event = json.loads((EVENTS / "mns-followup.json").read_text())
    body = event["data"]["messageBody"]
    event["data"]["messageBody"] = base64.b64encode(body.encode()).decode()
    messages = queue_messages(json.dumps([event, event]).encode())
    assert [m.body for m in messages] == [body, body]


@pytest.mark.parametrize("raw", [b"not json", b'{"version": 2}', b'{"version": 1}'])
def test_malformed_followups_raise(raw: bytes) -> None:
    with pytest.raises(FollowUpInvalidError):
        FollowUp.from_json(raw)


def test_non_events_raise() -> None:
    with pytest.raises(EventInvalidError):
        queue_messages(b'{"id": "x"}')
    with pytest.raises(EventInvalidError):
        HttpEvent.parse(b'{"body": ""}')


def test_delays_grow_and_are_capped_with_jitter() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        base = min(MAX_DELAY, 2 ** (attempt - 1))
        for _ in range(50):
            delay = delay_for(attempt, rng)
            assert max(1, round(base * 0.8)) <= delay <= min(MAX_DELAY, round(base * 1.2))
