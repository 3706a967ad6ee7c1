"""Transport through oss2 and plain HTTP against the local OSS: presigned URLs (V1 and V4) for
every operation, chunked bodies, Content-MD5, CRC-64 on every write, URL-special keys."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Any

import oss2
import pytest
import requests
from oss2.models import PartInfo

from local.emulators.server import EmulatorServer
from tests.unit.oss_fixtures import AK, BUCKET, REGION, SK, client_crc

KEY = "dir/ü ?&=+%#.txt"


@pytest.fixture(params=["v1", "v4"])
def signer(request: pytest.FixtureRequest, server: EmulatorServer,
           bucket: oss2.Bucket) -> oss2.Bucket:
    if request.param == "v1":
        return bucket
    return oss2.Bucket(oss2.AuthV4(AK, SK), server.url, BUCKET, region=REGION)


def call(signer: oss2.Bucket, method: str, key: str, params: dict[str, str] | None = None,
         headers: dict[str, str] | None = None, data: bytes = b"") -> requests.Response:
    url = signer.sign_url(method, key, 60, headers=headers, params=params)
    return requests.request(method, url, headers=headers, data=data, timeout=5)


def test_presigned_object_operations(signer: oss2.Bucket) -> None:
    typed = {"Content-Type": "text/plain"}
    put = call(signer, "PUT", KEY, headers=typed, data=b"hello")
    assert put.status_code == 200 and put.headers["x-oss-hash-crc64ecma"] == str(client_crc(b"hello"))
    got = call(signer, "GET", KEY)
    assert (got.content, got.headers["Content-Type"]) == (b"hello", "text/plain")
    assert call(signer, "HEAD", KEY).headers["Content-Length"] == "5"
    ranged = call(signer, "GET", KEY, headers={"Range": "bytes=1-2"})
    assert (ranged.status_code, ranged.content) == (206, b"el")
    tagging = b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"
    assert call(signer, "PUT", KEY, {"tagging": ""}, data=tagging).status_code == 200
    assert b"<Key>k</Key>" in call(signer, "GET", KEY, {"tagging": ""}).content
    acl = {"x-oss-object-acl": "private"}
    assert call(signer, "PUT", KEY, {"acl": ""}, headers=acl).status_code == 200
    assert b"<Grant>private</Grant>" in call(signer, "GET", KEY, {"acl": ""}).content
    link = {"x-oss-symlink-target": oss2.urlquote(KEY, "")}
    assert call(signer, "PUT", "link", {"symlink": ""}, headers=link).status_code == 200
    assert call(signer, "GET", "link").content == b"hello"
    copy = {"x-oss-copy-source": f"/{BUCKET}/{oss2.urlquote(KEY, '')}"}
    assert call(signer, "PUT", "copy", headers=copy).status_code == 200
    assert call(signer, "DELETE", KEY, {"tagging": ""}).status_code == 204
    for key in (KEY, "link", "copy"):
        assert call(signer, "DELETE", key).status_code == 204
    assert call(signer, "GET", KEY).status_code == 404


def test_presigned_append_and_multipart(signer: oss2.Bucket) -> None:
    first = call(signer, "POST", "log", {"append": "", "position": "0"}, data=b"abc")
    assert first.headers["x-oss-next-append-position"] == "3"
    second = call(signer, "POST", "log", {"append": "", "position": "3"}, data=b"def")
    assert second.headers["x-oss-hash-crc64ecma"] == str(client_crc(b"abcdef"))
    init = call(signer, "POST", "mp", {"uploads": ""})
    upload_id = init.text.split("<UploadId>")[1].split("</UploadId>")[0]
    part = call(signer, "PUT", "mp", {"partNumber": "1", "uploadId": upload_id}, data=b"part")
    assert part.headers["x-oss-hash-crc64ecma"] == str(client_crc(b"part"))
    assert b"<PartNumber>1</PartNumber>" in call(signer, "GET", "mp", {"uploadId": upload_id}).content
    body = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
            f"<ETag>{part.headers['ETag']}</ETag></Part></CompleteMultipartUpload>").encode()
    done = call(signer, "POST", "mp", {"uploadId": upload_id}, data=body)
    assert done.status_code == 200 and done.headers["x-oss-hash-crc64ecma"] == str(
        client_crc(b"part"))
    other = call(signer, "POST", "mp2", {"uploads": ""}).text
    other_id = other.split("<UploadId>")[1].split("</UploadId>")[0]
    assert call(signer, "DELETE", "mp2", {"uploadId": other_id}).status_code == 204


def test_presigned_url_signed_for_one_operation_does_not_serve_another(
        bucket: oss2.Bucket) -> None:
    bucket.put_object("k", b"x")
    url = bucket.sign_url("GET", "k", 60)
    assert requests.delete(url, timeout=5).status_code == 403
    tampered = bucket.sign_url("GET", "k", 60, params={"acl": ""}).replace("acl", "tagging")
    assert requests.get(tampered, timeout=5).status_code == 403
    assert bucket.object_exists("k")


def test_chunked_body_with_content_md5_is_checked(bucket: oss2.Bucket) -> None:
    data = [os.urandom(10_000) for _ in range(4)]
    digest = base64.b64encode(hashlib.md5(b"".join(data)).digest()).decode()
    bucket.put_object("chunked", iter(data), headers={"Content-MD5": digest})
    assert bucket.get_object("chunked").read() == b"".join(data)
    with pytest.raises(oss2.exceptions.InvalidDigest):
        bucket.put_object("chunked2", iter(data[:2]), headers={"Content-MD5": digest})
    assert not bucket.object_exists("chunked2")


WRITES: list[tuple[str, Callable[[oss2.Bucket], Any]]] = [
    ("put", lambda b: b.put_object("w", b"data")),
    ("append", lambda b: b.append_object("w", 0, b"data")),
    ("copy", lambda b: (b.put_object("s", b"data"), b.copy_object(BUCKET, "s", "w"))[1]),
]


@pytest.mark.parametrize(("name", "write"), WRITES, ids=[w[0] for w in WRITES])
def test_every_write_answers_its_crc64(bucket: oss2.Bucket, name: str,
                                       write: Callable[[oss2.Bucket], Any]) -> None:
    result = write(bucket)
    assert int(result.headers["x-oss-hash-crc64ecma"]) == client_crc(b"data")


def test_multipart_write_crc_is_checked_by_oss2(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("m").upload_id
    part = bucket.upload_part("m", upload_id, 1, b"data")
    result = bucket.complete_multipart_upload("m", upload_id, [
        PartInfo(1, part.etag, size=4, part_crc=part.crc)])
    assert result.crc == client_crc(b"data")


@pytest.mark.parametrize("key", ["a b", "a+b", "a%2Fb", "?", "#hash", "ü/é", "🙂", "x&y=z",
                                 "trailing/", ".hidden", "a//b"])
def test_url_special_keys_through_every_kind_of_call(bucket: oss2.Bucket, key: str) -> None:
    bucket.put_object(key, key.encode())
    bucket.append_object(key + ".log", 0, b"1")
    bucket.copy_object(BUCKET, key, key + ".copy")
    assert bucket.get_object(key + ".copy").read() == key.encode()
    listed = {o.key for o in oss2.ObjectIteratorV2(bucket)}
    assert listed == {key, key + ".log", key + ".copy"}
    assert sorted(bucket.batch_delete_objects(sorted(listed)).deleted_keys) == sorted(listed)
