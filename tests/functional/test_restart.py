"""Stopping and restarting the local cloud loses nothing: queued follow-ups, invocations, objects."""

from __future__ import annotations

import json
from pathlib import Path

from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest
from mns.queue import Message

from local.cloud import LocalCloud
from tests.localcloud import Endpoints, get_object, wait_for


def test_restart_keeps_queued_followups_invocations_and_objects(fresh_cloud_dir: Path) -> None:
    # Without completion events the follow-up (1 s) is what collects: it must survive the stop.
    params = {"CompletionEvents": False, "MaintenanceEnabled": False}
    cloud = LocalCloud(fresh_cloud_dir, parameters=params)
    endpoints = Endpoints(cloud.start())
    instance = endpoints["instances"][0]
    try:
        # An object and a message in a scratch queue, to be found again after the restart.
        bucket = endpoints.bucket()
        bucket.put_object("keep/me.txt", b"still here")
        scratch = endpoints.mns().get_queue("scratch")
        from mns.queue import QueueMeta

        scratch.create(QueueMeta())
        scratch.send_message(Message("delayed across a restart", delay_seconds=1))
        # Stop before the collector's first look (its follow-up is delayed by a second).
        status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo 123",
                                       "InstanceIds": [instance]})
        assert status == 202, body
    finally:
        cloud.stop()
    invoke_id = body["InvokeId"]

    again = LocalCloud(fresh_cloud_dir, parameters=params)
    endpoints2 = Endpoints(again.start())
    try:
        assert endpoints2["access_key_id"] == endpoints["access_key_id"]  # same local keys
        assert get_object(endpoints2.bucket(), "keep/me.txt") == b"still here"
        queue = endpoints2.mns().get_queue("scratch")
        message = wait_for(lambda: _receive(queue), timeout=5)
        assert message == "delayed across a restart"
        req = DescribeInvocationsRequest()
        req.set_InvokeId(invoke_id)
        assert endpoints2.call(req)["Invocations"]["Invocation"][0]["InvokeId"] == invoke_id
        # The follow-up queued before the restart is delivered now, and the result stored. If
        # the old host's trigger had received it just before the stop, MNS keeps it invisible
        # until its visibility timeout passes, as the real queue does: move the queue's clock
        # past that instead of waiting for it.
        again.servers["mns"].app.clock.advance(120)
        output = wait_for(lambda: get_object(endpoints2.bucket(),
                                             f"results/{invoke_id}/{instance}/output.txt"),
                          timeout=15)
        assert output == b"123\n"
        summary = json.loads(wait_for(lambda: get_object(
            endpoints2.bucket(), f"results/{invoke_id}/summary.json"), timeout=5))
        assert summary["Status"] == "Success"
    finally:
        again.stop()


def _receive(queue: object) -> str | None:
    from mns.mns_exception import MNSServerException

    try:
        msg = queue.receive_message(1)  # type: ignore[attr-defined]
    except MNSServerException:
        return None
    body = msg.message_body
    return body.decode() if isinstance(body, bytes) else str(body)
