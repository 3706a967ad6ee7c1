"""RAM in every emulator, through the official SDKs: a key bound to a role gets only what the
role's policies allow, refused with each service's own authorization error; owners' keys are
never checked."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oss2
import pytest
from aliyunsdkecs.request.v20140526.DeleteCommandRequest import DeleteCommandRequest
from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest
from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta
from mns.topic import TopicMessage, TopicMeta

from local.emulators.ecs.app import RAM_RESOURCES
from local.emulators.ecs.operations import OPERATIONS as ECS_OPERATIONS
from local.emulators.keyring import KeyRing
from local.emulators.mns import MnsApp
from local.emulators.oss import OssApp
from local.emulators.oss.operations import OPERATIONS as OSS_OPERATIONS
from local.emulators.server import EmulatorServer
from local.ram import Identity, Policy
from local.state import StsCredentials, issue_sts
from tests.unit.test_ecs_emulator import Ecs, b64, make, start_ecs

ACCOUNT = "1234567890123456"
OWNER = ("LTAIowner", "owner-secret")
BUCKET = "app-results"


def role(*statements: dict[str, Any]) -> Identity:
    policy = Policy.parse({"Version": "1", "Statement": list(statements)}, "FunctionRole/p")
    return Identity(f"acs:ram::{ACCOUNT}:role/app-functions", (policy,))


def allow(action: Any, resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action: Any, resource: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


# --- ECS -----------------------------------------------------------------------------------------
@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    with start_ecs(tmp_path) as driver:
        yield driver


def ecs_role_client(ecs: Ecs, who: Identity) -> Any:
    creds = issue_sts(ecs.app.keyring, who)
    return ecs.client(creds.access_key_id, creds.access_key_secret, creds.security_token)


def test_every_ecs_action_names_the_resources_ram_checks() -> None:
    assert set(RAM_RESOURCES) == set(ECS_OPERATIONS)


EXPECTED_ECS = {  # per ECS's RAM authorization reference; ids from the call, else "*"
    "CreateCommand": ["command/*"],
    "DeleteCommand": ["command/c-1"],
    "DescribeCommands": ["command/c-1"],
    "InvokeCommand": ["command/c-1", "instance/i-1", "instance/i-2"],
    "RunCommand": ["instance/i-1", "instance/i-2"],
    "StopInvocation": ["instance/i-1", "instance/i-2"],
    "DescribeInvocations": ["instance/i-1", "instance/i-2", "command/c-1"],
    "DescribeInvocationResults": ["command/c-1", "instance/i-1", "instance/i-2"],
    "DescribeInstances": ["instance/i-a", "instance/i-b"],
    "DescribeCloudAssistantStatus": ["instance/i-1", "instance/i-2"],
    "ListTagResources": ["instance/i-r"],  # ResourceType instance; no ResourceId: instance/*
}


@pytest.mark.parametrize("action", sorted(ECS_OPERATIONS))
def test_each_ecs_action_is_checked_under_its_ram_name_and_arns(ecs: Ecs, action: str) -> None:
    from local.emulators.base import Call
    from local.emulators.ecs.wire import Params

    params = {"RegionId": "cn-shanghai", "CommandId": "c-1", "InstanceId.1": "i-1",
              "InstanceId.2": "i-2", "InstanceIds": '["i-a", "i-b"]', "ResourceId.1": "i-r"}
    call = Call(request=None, request_id="r", action=action, params=Params(params))  # type: ignore[arg-type]
    checks = ecs.app.ram_request(call).checks
    assert {a for a, _ in checks} == {f"ecs:{action}"}
    arn = f"acs:ecs:cn-shanghai:{ecs.app.model.account_id}:"
    assert [r for _, r in checks] == [arn + r for r in EXPECTED_ECS.get(action, ["command/c-1"])]
    bare = Call(request=None, request_id="r", action=action, params=Params({}))  # type: ignore[arg-type]
    assert all(r.endswith("/*") for _, r in ecs.app.ram_request(bare).checks)


def test_ecs_refuses_an_action_the_role_lacks_with_forbidden_ram(ecs: Ecs) -> None:
    client = ecs_role_client(ecs, role(allow(["ecs:CreateCommand", "ecs:Describe*"])))
    command_id = ecs.create(b64("echo hi"))  # the owner made it; the role may only look
    assert ecs.call(make(DescribeInstancesRequest), client)["TotalCount"] > 0
    err = ecs.fails(make(DeleteCommandRequest, CommandId=command_id), client)
    assert (err.get_error_code(), err.get_http_status()) == ("Forbidden.RAM", 403)
    assert err.get_error_msg() == ("User not authorized to operate on the specified resource, "
                                   "or this API doesn't support RAM.")
    ecs.call(make(DeleteCommandRequest, CommandId=command_id))  # the owner's key: anything


def test_ecs_checks_the_command_and_every_instance_of_an_invocation(ecs: Ecs) -> None:
    client = ecs_role_client(ecs, role(
        allow("ecs:DescribeInvocations"),
        allow("ecs:InvokeCommand", ["acs:ecs:cn-hangzhou:*:command/*",
                                    "acs:ecs:cn-hangzhou:*:instance/i-sim0000?"])))
    command_id = ecs.create(b64("echo hi"))
    ok = ecs.call(make(InvokeCommandRequest, CommandId=command_id,
                       InstanceIds=["i-sim00001", "i-sim00002"]), client)
    assert ok["InvokeId"].startswith("t-")
    err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id,
                         InstanceIds=["i-sim00001", "i-sim00010"]), client)
    assert err.get_error_code() == "Forbidden.RAM"
    mine = ecs.call(make(DescribeInvocationsRequest, CommandId=command_id), client)
    assert mine["TotalCount"] == 1  # the refused call invoked nothing


def test_ecs_arns_carry_the_request_region_and_the_account(tmp_path: Path) -> None:
    (tmp_path / "instances.json").write_text(json.dumps({"instances": [
        {"InstanceId": "i-sim", "Count": 2, "Mode": "simulated"}]}))
    from local.emulators.ecs import EcsApp

    ring = KeyRing({OWNER[0]: (OWNER[1], None)})
    app = EcsApp(ring, tmp_path, account_id=ACCOUNT)
    ecs = Ecs(EmulatorServer(app).start())
    try:
        client = ecs_role_client(ecs, role(allow(
            "ecs:DescribeInstances", f"acs:ecs:cn-hangzhou:{ACCOUNT}:instance/*")))
        assert ecs.call(make(DescribeInstancesRequest), client)["TotalCount"] == 2
        other = ecs_role_client(ecs, role(allow(
            "ecs:DescribeInstances", "acs:ecs:cn-hangzhou:999:instance/*")))
        assert ecs.fails(make(DescribeInstancesRequest), other).get_error_code() == \
            "Forbidden.RAM"
    finally:
        ecs.server.stop()


# --- MNS -----------------------------------------------------------------------------------------
@pytest.fixture
def mns(tmp_path: Path) -> Iterator[tuple[EmulatorServer, KeyRing]]:
    ring = KeyRing({OWNER[0]: (OWNER[1], None)})
    server = EmulatorServer(MnsApp(ring, tmp_path, account_id=ACCOUNT, region="cn-shanghai"))
    server.start()
    owner = Account(server.url, *OWNER)
    for name in ("app-jobs", "app-secret", "other"):
        owner.get_queue(name).create(QueueMeta())
    for name in ("app-notify-ops", "other"):
        owner.get_topic(name).create(TopicMeta())
    yield server, ring
    server.stop()


def mns_error(call: Any) -> MNSServerException:
    with pytest.raises(MNSServerException) as info:
        call()
    return info.value


def test_mns_sends_only_where_the_role_may_and_refuses_with_access_denied(
        mns: tuple[EmulatorServer, KeyRing]) -> None:
    server, ring = mns
    creds = issue_sts(ring, role(
        allow("mns:SendMessage", f"acs:mns:cn-shanghai:{ACCOUNT}:/queues/app-*/messages"),
        deny("mns:*", "acs:mns:*:*:/queues/app-secret/*"),
        allow("mns:PublishMessage", "acs:mns:*:*:/topics/app-notify*")))
    account = Account(server.url, creds.access_key_id, creds.access_key_secret,
                      creds.security_token)
    assert account.get_queue("app-jobs").send_message(Message("ok")).message_id
    assert account.get_queue("app-jobs").batch_send_message([Message("a"), Message("b")])
    for name in ("other", "app-secret"):
        err = mns_error(lambda n=name: account.get_queue(n).send_message(Message("no")))
        assert err.type == "AccessDenied"
        assert err.message == ("The OwnerId that your Access Key Id associated to is forbidden "
                               "for this operation.")
    assert mns_error(lambda: account.get_queue("app-jobs").receive_message(0)).type == \
        "AccessDenied"  # mns:ReceiveMessage is not granted
    assert mns_error(lambda: account.get_queue("app-new").create(QueueMeta())).type == \
        "AccessDenied"
    assert account.get_topic("app-notify-ops").publish_message(TopicMessage("done")).message_id
    assert mns_error(lambda: account.get_topic("other").publish_message(
        TopicMessage("no"))).type == "AccessDenied"
    Account(server.url, *OWNER).get_queue("app-secret").send_message(Message("owner's"))
    assert _peek(server, "other") == [] and len(_peek(server, "app-jobs")) == 3
    assert len(_peek(server, "app-secret")) == 1  # the owner's key: anything goes


def _peek(server: EmulatorServer, queue: str) -> list[Any]:
    with urllib.request.urlopen(f"{server.url}/_emulator/queues/{queue}/messages",
                                timeout=5) as resp:
        return list(json.loads(resp.read())["messages"])


# --- OSS -----------------------------------------------------------------------------------------
@pytest.fixture
def oss(tmp_path: Path) -> Iterator[tuple[EmulatorServer, KeyRing]]:
    ring = KeyRing({OWNER[0]: (OWNER[1], None)})
    server = EmulatorServer(OssApp(ring, tmp_path, account_id=ACCOUNT)).start()
    owner = oss2.Bucket(oss2.Auth(*OWNER), server.url, BUCKET)
    owner.create_bucket()
    owner.put_object("other/a", b"theirs")
    owner.put_object("out/keep/a", b"kept")
    yield server, ring
    server.stop()


def role_bucket(server: EmulatorServer, creds: StsCredentials) -> oss2.Bucket:
    auth = oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token,
                        auth_version=oss2.AUTH_VERSION_4)
    return oss2.Bucket(auth, server.url, BUCKET, region="cn-hangzhou")


OSS_ROLE = role(
    allow(["oss:PutObject", "oss:GetObject", "oss:DeleteObject"],
          f"acs:oss:*:{ACCOUNT}:{BUCKET}/out/*"),
    deny("oss:DeleteObject", f"acs:oss:*:*:{BUCKET}/out/keep/*"),
    allow("oss:ListObjects", f"acs:oss:*:*:{BUCKET}"))


def refused(call: Any) -> oss2.exceptions.AccessDenied:
    with pytest.raises(oss2.exceptions.AccessDenied) as info:
        call()
    return info.value


def test_oss_writes_and_reads_only_under_the_granted_prefix(
        oss: tuple[EmulatorServer, KeyRing]) -> None:
    server, ring = oss
    bucket = role_bucket(server, issue_sts(ring, OSS_ROLE))
    bucket.put_object("out/t-1/output.txt", b"mine")
    assert bucket.get_object("out/t-1/output.txt").read() == b"mine"
    assert bucket.object_exists("out/t-1/output.txt")  # HEAD is oss:GetObject
    assert [o.key for o in oss2.ObjectIterator(bucket, prefix="out/t-1")] == [
        "out/t-1/output.txt"]
    err = refused(lambda: bucket.put_object("other/b", b"x"))
    assert err.status == 403 and err.details["EC"] == "0003-00000001"
    assert err.message == "You have no right to access this object because of bucket acl."
    assert refused(lambda: bucket.get_object("other/a")).status == 403
    assert refused(lambda: bucket.object_exists("other/a")).status == 403  # via x-oss-err
    service = oss2.Service(bucket.auth, server.url, region="cn-hangzhou")
    assert refused(service.list_buckets).status == 403


def test_oss_explicit_deny_answers_access_denied_by_policy(
        oss: tuple[EmulatorServer, KeyRing]) -> None:
    server, ring = oss
    bucket = role_bucket(server, issue_sts(ring, OSS_ROLE))
    err = refused(lambda: bucket.delete_object("out/keep/a"))
    assert (err.message, err.details["EC"]) == ("Access denied by bucket policy.",
                                                "0003-00000201")
    bucket.put_object("out/tmp", b"x")
    bucket.delete_object("out/tmp")
    refused(lambda: bucket.batch_delete_objects(["out/x", "other/a"]))  # every key counts
    bucket.batch_delete_objects(["out/x", "out/y"])


def test_oss_copy_needs_get_on_the_source_and_put_on_the_target(
        oss: tuple[EmulatorServer, KeyRing]) -> None:
    server, ring = oss
    bucket = role_bucket(server, issue_sts(ring, OSS_ROLE))
    refused(lambda: bucket.copy_object(BUCKET, "other/a", "out/copied"))
    bucket.put_object("out/src", b"s")
    bucket.copy_object(BUCKET, "out/src", "out/copied")
    refused(lambda: bucket.copy_object(BUCKET, "out/src", "other/copied"))


def test_owners_and_anonymous_callers_are_not_judged_by_ram(
        oss: tuple[EmulatorServer, KeyRing]) -> None:
    server, _ = oss
    owner = oss2.Bucket(oss2.Auth(*OWNER), server.url, BUCKET)
    owner.put_object("anywhere/x", b"1")
    owner.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    anonymous = oss2.Bucket(oss2.AnonymousAuth(), server.url, BUCKET)
    assert anonymous.get_object("anywhere/x").read() == b"1"


def test_refusal_comes_before_fault_injection_and_is_counted(
        oss: tuple[EmulatorServer, KeyRing]) -> None:
    server, ring = oss
    bucket = role_bucket(server, issue_sts(ring, OSS_ROLE))
    _control(server, "faults", {"action": "PutObject", "count": 1, "code": "InternalError",
                                "status": 500})
    refused(lambda: bucket.put_object("other/c", b"x"))  # RAM first: the fault still waits
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.put_object("out/c", b"x")
    assert info.value.code == "InternalError"
    assert _control(server, "calls")["calls"]["PutObject"] >= 2


EXPECTED_OSS = {  # each action's "Permissions" table in the OSS API reference; (action, resource)
    "ListBuckets": [("ListBuckets", "*")],
    "PutBucket": [("PutBucket", "b")], "DeleteBucket": [("DeleteBucket", "b")],
    "PutBucketAcl": [("PutBucketAcl", "b")], "GetBucketAcl": [("GetBucketAcl", "b")],
    "GetBucketInfo": [("GetBucketInfo", "b")], "GetBucketLocation": [("GetBucketLocation", "b")],
    "GetBucketStat": [("GetBucketStat", "b")], "ListObjects": [("ListObjects", "b")],
    "ListObjectsV2": [("ListObjects", "b")],
    "ListMultipartUploads": [("ListMultipartUploads", "b")],
    "DeleteMultipleObjects": [("DeleteObject", "b/k")],
    "PutObject": [("PutObject", "b/k"), ("PutObjectTagging", "b/k")],
    "GetObject": [("GetObject", "b/k")], "HeadObject": [("GetObject", "b/k")],
    "GetObjectMeta": [("GetObject", "b/k")], "DeleteObject": [("DeleteObject", "b/k")],
    "CopyObject": [("PutObject", "b/k"), ("GetObject", "s/src"), ("PutObjectTagging", "b/k")],
    "AppendObject": [("PutObject", "b/k"), ("PutObjectTagging", "b/k")],
    "PutObjectAcl": [("PutObjectAcl", "b/k")], "GetObjectAcl": [("GetObjectAcl", "b/k")],
    "PutObjectTagging": [("PutObjectTagging", "b/k")],
    "GetObjectTagging": [("GetObjectTagging", "b/k")],
    "DeleteObjectTagging": [("DeleteObjectTagging", "b/k")],
    "PutSymlink": [("PutObject", "b/k"), ("PutObjectTagging", "b/k")],
    "GetSymlink": [("GetObject", "b/k")], "RestoreObject": [("RestoreObject", "b/k")],
    "InitiateMultipartUpload": [("PutObject", "b/k"), ("PutObjectTagging", "b/k")],
    "UploadPart": [("PutObject", "b/k")],
    "UploadPartCopy": [("PutObject", "b/k"), ("GetObject", "s/src")],
    "CompleteMultipartUpload": [("PutObject", "b/k")],
    "AbortMultipartUpload": [("AbortMultipartUpload", "b/k")],
    "ListParts": [("ListParts", "b/k")],
}


@pytest.fixture(scope="module")
def oss_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OssApp]:
    app = OssApp(KeyRing({}), tmp_path_factory.mktemp("oss-ram"), account_id=ACCOUNT)
    yield app
    app.close()


@pytest.mark.parametrize("action", sorted(OSS_OPERATIONS))
def test_each_oss_action_is_checked_under_its_ram_name_and_arn(oss_app: OssApp,
                                                               action: str) -> None:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from local.emulators.base import Call
    from local.emulators.oss.signing import RequestParts

    bucket_level = {a for a, checks in EXPECTED_OSS.items() if checks[0][1] in ("b", "*")}
    key = "" if action in bucket_level or action == "DeleteMultipleObjects" else "k"
    body = b"<Delete><Object><Key>k</Key></Object></Delete>"
    request = Request(EnvironBuilder(method="POST", data=body).get_environ())
    headers = {"x-oss-copy-source": "/s/src", "x-oss-tagging": "a=1"}
    parts = RequestParts("PUT", "" if action == "ListBuckets" else "b", key, {}, headers)
    call = Call(request=request, request_id="r", action=action, params=parts)
    arn = f"acs:oss:*:{ACCOUNT}:"
    assert list(oss_app.ram_request(call).checks) == [
        (f"oss:{a}", arn + r) for a, r in EXPECTED_OSS[action]]


OSS_WRITER = role(
    allow("oss:PutObject", f"acs:oss:*:{ACCOUNT}:{BUCKET}/out/*"),
    allow("oss:GetObject", f"acs:oss:*:{ACCOUNT}:{BUCKET}/*"),
    allow("oss:ListParts", f"acs:oss:*:{ACCOUNT}:{BUCKET}/out/*"))


def test_oss_appends_uploads_and_links_need_put_object_where_they_write(
        oss: tuple[EmulatorServer, KeyRing]) -> None:
    server, ring = oss
    bucket = role_bucket(server, issue_sts(ring, OSS_WRITER))
    bucket.append_object("out/log", 0, b"x")
    refused(lambda: bucket.append_object("other/log", 0, b"x"))
    upload_id = bucket.init_multipart_upload("out/big").upload_id
    part = bucket.upload_part_copy(BUCKET, "other/a", None, "out/big", upload_id, 1)
    assert [p.part_number for p in bucket.list_parts("out/big", upload_id).parts] == [1]
    bucket.complete_multipart_upload("out/big", upload_id, [oss2.models.PartInfo(1, part.etag)])
    refused(lambda: bucket.init_multipart_upload("other/big"))
    bucket.put_symlink("other/a", "out/link")
    refused(lambda: bucket.put_symlink("out/big", "other/link"))


def test_oss_tagging_abort_and_upload_listing_need_their_own_actions(
        oss: tuple[EmulatorServer, KeyRing]) -> None:
    server, ring = oss
    bucket = role_bucket(server, issue_sts(ring, OSS_WRITER))
    refused(lambda: bucket.put_object("out/t", b"x", headers={"x-oss-tagging": "a=1"}))
    assert not oss2.Bucket(oss2.Auth(*OWNER), server.url, BUCKET).object_exists("out/t")
    upload_id = bucket.init_multipart_upload("out/u").upload_id
    refused(lambda: bucket.abort_multipart_upload("out/u", upload_id))
    refused(lambda: bucket.list_multipart_uploads())
    refused(lambda: bucket.put_object_acl("out/u", oss2.OBJECT_ACL_PRIVATE))
    tagger = role_bucket(server, issue_sts(ring, role(
        allow(["oss:PutObject", "oss:PutObjectTagging", "oss:AbortMultipartUpload"],
              f"acs:oss:*:{ACCOUNT}:{BUCKET}/out/*"),
        allow("oss:ListMultipartUploads", f"acs:oss:*:{ACCOUNT}:{BUCKET}"))))
    tagger.put_object("out/t", b"x", headers={"x-oss-tagging": "a=1"})
    assert [u.upload_id for u in oss2.MultipartUploadIterator(tagger)] == [upload_id]
    tagger.abort_multipart_upload("out/u", upload_id)


def _control(server: EmulatorServer, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.url}/_emulator/{path}", data=data,
                                     method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())
