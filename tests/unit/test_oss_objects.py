"""Object reads and writes through oss2 against the local OSS: conditional reads, response
header overrides, copies and their directives, metadata updates, appends with their positions
and CRC-64, and what the local OSS refuses as the service does (other storage classes, KMS)."""

from __future__ import annotations

import os

import oss2
import pytest
import requests

from local.emulators.oss import OssApp
from tests.unit.oss_fixtures import client_crc

LONG_AGO = "Mon, 01 Jan 2001 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"


@pytest.fixture
def stored(bucket: oss2.Bucket) -> oss2.models.PutObjectResult:
    return bucket.put_object("doc.txt", b"0123456789")


@pytest.mark.parametrize(("header", "value_of", "error"), [
    ("If-Match", lambda etag: '"00000000000000000000000000000000"', oss2.exceptions.PreconditionFailed),
    ("If-Unmodified-Since", lambda etag: LONG_AGO, oss2.exceptions.PreconditionFailed),
    ("If-None-Match", lambda etag: f'"{etag}"', oss2.exceptions.NotModified),
    ("If-Modified-Since", lambda etag: FUTURE, oss2.exceptions.NotModified),
])
def test_failed_conditions_on_get_and_head(bucket: oss2.Bucket, stored: oss2.models.PutObjectResult,
                                           header: str, value_of: object, error: type) -> None:
    headers = {header: value_of(stored.etag)}  # type: ignore[operator]
    with pytest.raises(error):
        bucket.get_object("doc.txt", headers=headers)
    with pytest.raises(error):
        bucket.head_object("doc.txt", headers=headers)


@pytest.mark.parametrize(("header", "value_of"), [
    ("If-Match", lambda etag: f'"{etag}"'), ("If-Unmodified-Since", lambda etag: FUTURE),
    ("If-None-Match", lambda etag: '"00000000000000000000000000000000"'),
    ("If-Modified-Since", lambda etag: LONG_AGO),
])
def test_holding_conditions_read_the_object(bucket: oss2.Bucket, stored: oss2.models.PutObjectResult,
                                            header: str, value_of: object) -> None:
    headers = {header: value_of(stored.etag)}  # type: ignore[operator]
    assert bucket.get_object("doc.txt", headers=headers).read() == b"0123456789"


def test_range_with_condition(bucket: oss2.Bucket, stored: oss2.models.PutObjectResult) -> None:
    result = bucket.get_object("doc.txt", byte_range=(2, 4), headers={"If-Match": stored.etag})
    assert (result.status, result.read()) == (206, b"234")


def test_response_header_overrides(bucket: oss2.Bucket, stored: oss2.models.PutObjectResult) -> None:
    params = {"response-content-type": "text/csv", "response-cache-control": "no-cache",
              "response-content-disposition": 'attachment; filename="d.csv"',
              "response-content-language": "fr", "response-expires": FUTURE,
              "response-content-encoding": "identity"}
    headers = bucket.get_object("doc.txt", params=params).headers
    assert (headers["Content-Type"], headers["Cache-Control"], headers["Content-Language"],
            headers["Expires"]) == ("text/csv", "no-cache", "fr", FUTURE)
    assert headers["Content-Disposition"] == 'attachment; filename="d.csv"'


def test_overrides_through_a_presigned_url(bucket: oss2.Bucket, stored: oss2.models.PutObjectResult,
                                           bucket_v4: oss2.Bucket) -> None:
    for signer in (bucket, bucket_v4):
        url = signer.sign_url("GET", "doc.txt", 60, params={"response-content-type": "a/b"})
        response = requests.get(url, timeout=5)
        assert (response.status_code, response.headers["Content-Type"]) == (200, "a/b")


def test_copy_keeps_or_replaces_metadata(bucket: oss2.Bucket) -> None:
    bucket.put_object("src", b"data", headers={"Content-Type": "text/plain",
                                               "x-oss-meta-a": "1"})
    bucket.copy_object(bucket.bucket_name, "src", "kept")
    bucket.copy_object(bucket.bucket_name, "src", "replaced",
                       headers={"x-oss-metadata-directive": "REPLACE", "x-oss-meta-b": "2",
                                "Content-Type": "application/json"})
    kept, replaced = bucket.head_object("kept"), bucket.head_object("replaced")
    assert (kept.content_type, kept.headers["x-oss-meta-a"]) == ("text/plain", "1")
    assert replaced.content_type == "application/json"
    assert "x-oss-meta-a" not in replaced.headers and replaced.headers["x-oss-meta-b"] == "2"
    assert bucket.get_object("replaced").read() == b"data"


def test_copy_across_buckets_and_errors(bucket: oss2.Bucket) -> None:
    other = oss2.Bucket(bucket.auth, bucket.endpoint, "other-bucket")
    other.create_bucket()
    bucket.put_object("ü key?&=", b"x")
    other.copy_object(bucket.bucket_name, "ü key?&=", "copied")
    assert other.get_object("copied").read() == b"x"
    with pytest.raises(oss2.exceptions.NoSuchKey):
        other.copy_object(bucket.bucket_name, "missing", "copied")
    with pytest.raises(oss2.exceptions.InvalidArgument):
        other.copy_object(bucket.bucket_name, "ü key?&=", "c",
                          headers={"x-oss-metadata-directive": "MERGE"})


def test_update_object_meta_by_copy_to_self(bucket: oss2.Bucket) -> None:
    bucket.put_object("m", b"body", headers={"x-oss-meta-old": "1"})
    bucket.put_object_acl("m", oss2.OBJECT_ACL_PUBLIC_READ)
    bucket.update_object_meta("m", {"x-oss-meta-new": "2", "Content-Type": "text/x"})
    head = bucket.head_object("m")
    assert head.headers["x-oss-meta-new"] == "2" and "x-oss-meta-old" not in head.headers
    assert head.content_type == "text/x"
    assert bucket.get_object("m").read() == b"body"
    assert bucket.get_object_acl("m").acl == "public-read"


def test_append_creates_an_appendable_object_and_checks_crc(bucket: oss2.Bucket) -> None:
    first = bucket.append_object("log.txt", 0, b"line 1\n", headers={"Content-Type": "text/plain",
                                                                     "x-oss-meta-a": "1"})
    assert (first.next_position, first.crc) == (7, client_crc(b"line 1\n"))
    second = bucket.append_object("log.txt", first.next_position, b"line 2\n",
                                  init_crc=first.crc)  # oss2 checks the whole object's CRC
    assert (second.next_position, second.crc) == (14, client_crc(b"line 1\nline 2\n"))
    head = bucket.head_object("log.txt")
    assert (head.object_type, head.content_type, head.headers["x-oss-meta-a"]) == (
        "Appendable", "text/plain", "1")
    assert head.headers["x-oss-next-append-position"] == "14"
    assert bucket.get_object("log.txt").read() == b"line 1\nline 2\n"
    listed = next(iter(oss2.ObjectIterator(bucket)))
    assert (listed.type, listed.size) == ("Appendable", 14)


def test_append_at_the_wrong_position_says_the_right_one(bucket: oss2.Bucket) -> None:
    bucket.append_object("log", 0, b"abc")
    for position in (0, 2, 4):
        with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as info:
            bucket.append_object("log", position, b"x")
        assert info.value.next_position == 3
    with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as info:
        bucket.append_object("new", 5, b"x")
    assert info.value.next_position == 0
    assert bucket.get_object("log").read() == b"abc" and not bucket.object_exists("new")


def test_append_to_a_normal_object_is_refused(bucket: oss2.Bucket) -> None:
    bucket.put_object("normal", b"abc")
    with pytest.raises(oss2.exceptions.ObjectNotAppendable):
        bucket.append_object("normal", 3, b"x")


def test_append_checks_content_md5_of_the_appended_bytes(bucket: oss2.Bucket) -> None:
    bucket.append_object("log", 0, b"abc")
    good = {"Content-MD5": oss2.utils.content_md5(b"def")}
    assert bucket.append_object("log", 3, b"def", headers=good).next_position == 6
    with pytest.raises(oss2.exceptions.InvalidDigest):
        bucket.append_object("log", 6, b"ghi", headers={"Content-MD5": good["Content-MD5"]})
    assert bucket.get_object("log").read() == b"abcdef"


def test_append_from_a_generator_is_chunked(bucket: oss2.Bucket) -> None:
    chunks = [os.urandom(50_000) for _ in range(3)]
    result = bucket.append_object("gen", 0, iter(chunks))
    assert result.crc == client_crc(b"".join(chunks))


def test_an_appendable_object_cannot_be_copied(bucket: oss2.Bucket) -> None:
    bucket.append_object("log", 0, b"abc")
    with pytest.raises(oss2.exceptions.OperationNotSupported):
        bucket.copy_object(bucket.bucket_name, "log", "copy")
    assert not bucket.object_exists("copy")


def test_put_overwrites_an_appendable_object_as_normal(bucket: oss2.Bucket) -> None:
    bucket.append_object("log", 0, b"abc")
    bucket.put_object("log", b"new")
    assert bucket.head_object("log").object_type == "Normal"


def test_storage_class_other_than_standard_is_refused(bucket: oss2.Bucket) -> None:
    for storage_class in ("IA", "Archive", "ColdArchive"):
        with pytest.raises(oss2.exceptions.InvalidArgument):
            bucket.put_object("cold", b"x", headers={"x-oss-storage-class": storage_class})
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.put_object("cold", b"x", headers={"x-oss-storage-class": "Lukewarm"})
    assert not bucket.object_exists("cold")
    bucket.put_object("std", b"x", headers={"x-oss-storage-class": "Standard"})
    assert bucket.head_object("std").headers["x-oss-storage-class"] == "Standard"


def test_kms_encryption_is_answered_as_for_an_account_without_kms(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.put_object("k", b"x", headers={"x-oss-server-side-encryption": "KMS"})
    assert (info.value.status, info.value.code) == (403, "KmsServiceNotEnabled")
    with pytest.raises(oss2.exceptions.InvalidEncryptionAlgorithmError):
        bucket.put_object("k", b"x", headers={"x-oss-server-side-encryption": "ROT13"})
    assert not bucket.object_exists("k")


def test_each_append_moves_last_modified(bucket: oss2.Bucket, app: OssApp) -> None:
    bucket.append_object("a", 0, b"x")
    before = bucket.head_object("a").last_modified
    app.clock.advance(5)
    bucket.append_object("a", 1, b"y")
    assert bucket.head_object("a").last_modified >= before + 5


def test_a_read_whose_bytes_another_process_dropped_reads_the_new_object(
        bucket: oss2.Bucket, app: OssApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Served by two processes, one can replace an object between the other's read of its row
    and of its bytes, dropping the bytes the row named. The read looks again and answers the
    new object, as OSS would, instead of a 500 (seen once in the crash test's fresh-clone run)."""
    from dataclasses import replace

    bucket.put_object("race.txt", b"new")
    model = app.model
    head = model.head_object
    stale: list[str] = []

    def head_read_before_the_overwrite(bucket_name: str, key: str) -> object:
        found = head(bucket_name, key)
        if stale:
            return found
        stale.append(key)  # the row as it was: bytes the overwrite has dropped since
        return replace(found, blob="=" + "0" * 32)

    monkeypatch.setattr(model, "head_object", head_read_before_the_overwrite)
    assert bucket.get_object("race.txt").read() == b"new"
    assert stale == ["race.txt"]
