"""Issue 13, item 5: ``Notify.Url`` cannot be used to reach what only the functions can reach.

Any host used to be accepted — loopback, Alibaba Cloud's metadata service — and the sender
followed a 302, turning the POST into a GET toward the redirect target with the signature
headers. Now a URL whose host resolves to a non-public address is refused at intake (403,
nothing created) unless ``NotifyAllowedHosts`` lists it (the local cloud lists 127.0.0.1 only),
and a redirect is an answer, never followed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import (
    DescribeInvocationsRequest,
)

from local.cloud import LocalCloud
from tests.localcloud import Endpoints, get_object, wait_for
from tests.reliability.receivers import advance_queues, receiving

LINUX1 = "i-local00000000000001"

REFUSED_URLS = [
    "http://100.100.100.200/latest/meta-data/",  # the metadata service
    "http://100.100.100.200/latest/meta-data/ram/security-credentials/",
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.2:8080/",  # loopback, but not the one address the local cloud allows
    "http://0x7f000002/",  # the same, spelled in hex
    "http://[::1]:8080/",
    "http://[::ffff:100.100.100.200]/",
    "http://10.0.0.1/",
    "http://192.168.1.1/admin",
    "http://[fd00::1]/",
    "http://0.0.0.0:9000/",
]


def totals(endpoints: Endpoints) -> tuple[int, int]:
    """How many invocations and commands the account has."""
    return (int(endpoints.call(DescribeInvocationsRequest())["TotalCount"]),
            int(endpoints.call(DescribeCommandsRequest())["TotalCount"]))


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_a_non_public_notify_url_is_refused_up_front(endpoints: Endpoints, url: str,
                                                     tally: Counter[str]) -> None:
    before = totals(endpoints)
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo x",
                                   "InstanceIds": [LINUX1], "Notify": {"Url": url}})
    tally["non-public notify URLs refused"] += 1
    assert status == 403, body
    [error] = body["Errors"]
    assert (error["path"], error["rule"]) == ("$.Notify.Url", "notifyAddress")
    assert "public" in error["message"] and "NotifyAllowedHosts" in error["message"]
    assert totals(endpoints) == before  # nothing created


def test_a_notify_url_with_credentials_or_no_address_is_invalid(endpoints: Endpoints) -> None:
    for url in ("http://user:pw@127.0.0.1:8080/", "http://no-such-host.invalid/"):
        status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo x",
                                       "InstanceIds": [LINUX1], "Notify": {"Url": url}})
        assert status == 400, body
        assert body["Errors"][0]["path"] == "$.Notify.Url"


@pytest.fixture(scope="module")
def own_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """A cloud of its own: the test moves its MNS clock."""
    state = tmp_path_factory.mktemp("ssrf") / "state"
    state.mkdir()
    cloud = LocalCloud(state, parameters={"MaintenanceEnabled": False})
    cloud.start()
    yield cloud
    cloud.stop()


def test_a_redirect_is_never_followed(own_cloud: LocalCloud, tally: Counter[str]) -> None:
    endpoints = Endpoints(own_cloud.endpoints)
    with receiving([204]) as target, receiving([302], location="") as receiver:
        receiver.location = target.url + "?stolen=1"  # allowed itself (127.0.0.1), yet unused
        status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo r",
                                       "InstanceIds": [LINUX1],
                                       "Notify": {"Url": receiver.url}})
        assert status == 202, body
        invoke_id = body["InvokeId"]
        [first] = wait_for(lambda: receiver.attempts(invoke_id) or None, 15)
        assert (first.method, first.path) == ("POST", "/hook")
        assert "X-Assistflow-Signature" in first.headers
        advance_queues(own_cloud, 60)  # the retries that follow are not followed either
        attempts = receiver.attempts(invoke_id)
        tally["redirects answered, none followed"] += len(attempts)
        assert len(attempts) >= 2 and all(a.method == "POST" for a in attempts)
        assert target.seen == []  # the redirect target received nothing, ever
        key = f"results/requests/{body['RequestId']}/summary.json"  # one per request
        notification = json.loads(get_object(endpoints.bucket(), key) or b"{}")["Notification"]
        # a 302 is not a delivery: a failed attempt, retried (to the same URL) within the bound
        assert notification["Status"] == "Retrying"
        assert "answered 302" in notification["LastError"]
        assert "not followed" in notification["LastError"]
