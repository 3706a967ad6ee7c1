"""The OSS emulator driven through the unchanged oss2 SDK (only the endpoint points at it)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import threading
from pathlib import Path

import oss2
import pytest
import requests

from local.emulators.oss import OssApp
from local.emulators.oss.app import ACCESS
from local.emulators.oss.crc64 import crc64, crc64_py
from local.emulators.oss.entities import NewObject
from local.emulators.oss.operations import OPERATIONS
from local.emulators.oss.store import INLINE_MAX
from local.emulators.server import EmulatorServer
from tests.unit.oss_fixtures import AK, BUCKET, KEYRING, REGION, SK, STS_AK, STS_SK, STS_TOKEN, client_crc


# --- CRC-64 --------------------------------------------------------------------------------
def test_crc64_matches_the_xz_check_value() -> None:
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA
    assert crc64_py(b"123456789") == 0x995DC9BBDF1939FA


def test_crc64_streams_and_agrees_with_oss2() -> None:
    data = os.urandom(4096)
    assert crc64_py(data[1000:], crc64_py(data[:1000])) == client_crc(data) == crc64(data)


# --- object round trips --------------------------------------------------------------------
def test_text_round_trip(bucket: oss2.Bucket) -> None:
    bucket.put_object("notes.txt", "héllo wörld\n")
    assert bucket.get_object("notes.txt").read() == "héllo wörld\n".encode()


def test_binary_round_trip_of_all_byte_values(bucket: oss2.Bucket) -> None:
    data = bytes(range(256)) * 3
    bucket.put_object("all-bytes.bin", data)
    assert bucket.get_object("all-bytes.bin").read() == data


@pytest.mark.parametrize("key", [
    "dir/sub/file.txt", "with space.txt", "plus+sign", "per%cent%2F", "q?a#b&c=d",
    "日本語/ключ ü.bin", "folder/",
])
def test_odd_keys_round_trip_and_list_back_unchanged(bucket: oss2.Bucket, key: str) -> None:
    bucket.put_object(key, key.encode())
    assert bucket.get_object(key).read() == key.encode()
    assert [o.key for o in bucket.list_objects_v2().object_list] == [key]


def test_slash_and_encoded_slash_are_different_keys(bucket: oss2.Bucket) -> None:
    bucket.put_object("a/b", b"slash")
    bucket.put_object("a%2Fb", b"literal")
    assert bucket.get_object("a/b").read() == b"slash"
    assert bucket.get_object("a%2Fb").read() == b"literal"


def test_put_from_generator_is_chunked_and_stored_whole(bucket: oss2.Bucket) -> None:
    parts = [os.urandom(70_000) for _ in range(3)]
    result = bucket.put_object("gen.bin", iter(parts))
    data = b"".join(parts)
    assert result.crc == client_crc(data)
    assert bucket.get_object("gen.bin").read() == data


def test_put_from_bytesio(bucket: oss2.Bucket) -> None:
    bucket.put_object("file.bin", io.BytesIO(b"from a file object"))
    assert bucket.get_object("file.bin").read() == b"from a file object"


def test_put_returns_etag_and_crc_headers(bucket: oss2.Bucket) -> None:
    data = b"checksummed"
    result = bucket.put_object("c.bin", data)
    assert result.etag == hashlib.md5(data).hexdigest().upper()
    assert result.crc == client_crc(data)
    assert result.request_id


def test_oss2_checks_the_put_crc_header(bucket: oss2.Bucket, app: OssApp,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_put = app.model.put_object

    def corrupting_put(*args: object, **kwargs: object) -> object:
        return dataclasses.replace(real_put(*args, **kwargs), crc64=1)  # type: ignore[arg-type]

    monkeypatch.setattr(app.model, "put_object", corrupting_put)
    with pytest.raises(oss2.exceptions.InconsistentError):
        bucket.put_object("bad-crc.bin", b"payload")


def test_get_object_to_file_passes_crc_check(bucket: oss2.Bucket, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    bucket.put_object("big.bin", data)
    target = tmp_path / "download.bin"
    result = bucket.get_object_to_file("big.bin", str(target))
    assert target.read_bytes() == data
    assert result.server_crc == result.client_crc == client_crc(data)


def test_overwrite_keeps_one_copy(own_server: EmulatorServer, state_dir: Path) -> None:
    bucket = oss2.Bucket(oss2.Auth(AK, SK), own_server.url, BUCKET)
    bucket.create_bucket()
    first, second = os.urandom(INLINE_MAX + 1), os.urandom(INLINE_MAX + 2)  # kept in files
    bucket.put_object("k", first)
    bucket.put_object("k", second)
    assert bucket.get_object("k").read() == second
    blobs = [p for p in (state_dir / "oss" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    bucket.put_object("k", b"small")  # now kept in its row: the file goes
    assert bucket.get_object("k").read() == b"small"
    assert not [p for p in (state_dir / "oss" / "blobs").rglob("*") if p.is_file()]


@pytest.mark.parametrize("size", [1, INLINE_MAX, INLINE_MAX + 1])
def test_small_objects_live_in_their_row_and_survive_a_restart(state_dir: Path,
                                                               size: int) -> None:
    data = os.urandom(size)
    first = EmulatorServer(OssApp(KEYRING, state_dir)).start()
    try:
        b = oss2.Bucket(oss2.Auth(AK, SK), first.url, BUCKET)
        b.create_bucket()
        b.put_object("r/result.json", data)
        with pytest.raises(oss2.exceptions.ServerError):  # 409: a refused put leaves nothing
            b.put_object("r/result.json", b"other", headers={"x-oss-forbid-overwrite": "true"})
        b.copy_object(BUCKET, "r/result.json", "r/copy.json")
        inline = first.app.model.store.query("SELECT COUNT(*) FROM inline_blobs")[0][0]
        assert inline == (2 if size <= INLINE_MAX else 0)  # the refused put left no blob row
    finally:
        first.stop()
    files = [p for p in (state_dir / "oss" / "blobs").rglob("*") if p.is_file()]
    assert len(files) == (0 if size <= INLINE_MAX else 2)
    second = EmulatorServer(OssApp(KEYRING, state_dir)).start()
    try:
        b = oss2.Bucket(oss2.Auth(AK, SK), second.url, BUCKET)
        for key in ("r/result.json", "r/copy.json"):
            got = b.get_object(key)
            assert got.read() == data and got.server_crc == client_crc(data)
        assert b.get_object("r/result.json", byte_range=(0, 0)).read() == data[:1]
    finally:
        second.stop()


def test_metadata_round_trip(bucket: oss2.Bucket) -> None:
    bucket.put_object("m.txt", b"x", headers={"x-oss-meta-owner": "alice",
                                              "x-oss-meta-Project": "Flow 1"})
    head = bucket.head_object("m.txt")
    assert head.headers["x-oss-meta-owner"] == "alice"
    assert head.headers["x-oss-meta-project"] == "Flow 1"


def test_content_type_is_stored_and_returned(bucket: oss2.Bucket) -> None:
    bucket.put_object("doc", b"{}", headers={"Content-Type": "application/json"})
    assert bucket.get_object("doc").content_type == "application/json"
    assert bucket.head_object("doc").content_type == "application/json"


def test_head_returns_size_etag_and_last_modified(bucket: oss2.Bucket) -> None:
    bucket.put_object("h.bin", b"12345")
    head = bucket.head_object("h.bin")
    assert head.content_length == 5
    assert head.etag == hashlib.md5(b"12345").hexdigest().upper()
    assert head.last_modified > 0
    assert head.server_crc == client_crc(b"12345")


def test_head_missing_key_raises_no_such_key(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.NoSuchKey) as info:
        bucket.head_object("missing")
    assert info.value.request_id


def test_get_missing_key_raises_no_such_key(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.NoSuchKey) as info:
        bucket.get_object("missing")
    assert info.value.details["Key"] == "missing"


def test_object_exists(bucket: oss2.Bucket) -> None:
    bucket.put_object("here", b"1")
    assert bucket.object_exists("here") is True
    assert bucket.object_exists("absent") is False


def test_head_in_missing_bucket_reports_no_such_bucket(server: EmulatorServer) -> None:
    # HEAD answers carry no body: oss2 reads the error from the base64 x-oss-err header
    nowhere = oss2.Bucket(oss2.Auth(AK, SK), server.url, "no-such-bucket")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        nowhere.object_exists("k")


def test_missing_bucket_raises_no_such_bucket(server: EmulatorServer) -> None:
    nowhere = oss2.Bucket(oss2.Auth(AK, SK), server.url, "no-such-bucket")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        nowhere.put_object("k", b"v")


def test_delete_object_is_idempotent(bucket: oss2.Bucket) -> None:
    bucket.put_object("gone", b"1")
    assert bucket.delete_object("gone").status == 204
    assert bucket.delete_object("gone").status == 204
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("gone")


def test_batch_delete_reports_odd_keys_decoded(bucket: oss2.Bucket) -> None:
    keys = ["a b", "c+d", "ü/é"]
    for key in keys:
        bucket.put_object(key, b"1")
    assert sorted(bucket.batch_delete_objects(keys).deleted_keys) == sorted(keys)
    assert bucket.list_objects_v2().object_list == []


def test_copy_object_copies_bytes_and_metadata(bucket: oss2.Bucket) -> None:
    bucket.put_object("src key", b"copy me", headers={"x-oss-meta-tag": "t1"})
    result = bucket.copy_object(BUCKET, "src key", "dst/key")
    assert result.etag == hashlib.md5(b"copy me").hexdigest().upper()
    copied = bucket.get_object("dst/key")
    assert copied.read() == b"copy me"
    assert copied.headers["x-oss-meta-tag"] == "t1"


def test_if_none_match_current_etag_is_not_modified(bucket: oss2.Bucket) -> None:
    etag = bucket.put_object("cond", b"1").etag
    with pytest.raises(oss2.exceptions.NotModified):
        bucket.get_object("cond", headers={"If-None-Match": f'"{etag}"'})


def test_forbid_overwrite_rejects_existing_key(bucket: oss2.Bucket) -> None:
    bucket.put_object("once", b"1")
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.put_object("once", b"2", headers={"x-oss-forbid-overwrite": "true"})
    assert (info.value.status, info.value.code) == (409, "FileAlreadyExists")


def test_key_longer_than_1023_bytes_is_rejected(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.InvalidObjectName):
        bucket.put_object("k" * 1024, b"1")


# --- Content-MD5 ---------------------------------------------------------------------------
def test_content_md5_mismatch_is_rejected(bucket: oss2.Bucket) -> None:
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(oss2.exceptions.InvalidDigest):
        bucket.put_object("md5", b"payload", headers={"Content-MD5": wrong})
    assert not bucket.object_exists("md5")


def test_content_md5_match_is_accepted(bucket: oss2.Bucket) -> None:
    right = oss2.utils.content_md5(b"payload")
    bucket.put_object("md5", b"payload", headers={"Content-MD5": right})
    assert bucket.get_object("md5").read() == b"payload"


# --- ranges --------------------------------------------------------------------------------
DATA = bytes(range(100))


def test_range_read_is_partial_with_whole_object_crc(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", DATA)
    result = bucket.get_object("r", byte_range=(10, 19))
    assert result.status == 206
    assert result.read() == DATA[10:20]
    assert result.headers["Content-Range"] == "bytes 10-19/100"
    assert result.server_crc == client_crc(DATA)


def test_open_ended_and_suffix_ranges(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", DATA)
    assert bucket.get_object("r", byte_range=(95, None)).read() == DATA[95:]
    assert bucket.get_object("r", byte_range=(None, 5)).read() == DATA[-5:]


def test_out_of_range_returns_whole_object_by_default(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", DATA)
    result = bucket.get_object("r", byte_range=(100, 200))
    assert result.status == 200
    assert result.read() == DATA


def test_unsatisfiable_range_with_standard_behaviour_is_416(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", DATA)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.get_object("r", byte_range=(100, 200),
                          headers={"x-oss-range-behavior": "standard"})
    assert (info.value.status, info.value.code) == (416, "InvalidRange")


# --- listing -------------------------------------------------------------------------------
def _fast_fill(app: OssApp, keys: list[str]) -> None:
    for key in keys:
        app.model.put_object(BUCKET, key, [b""], NewObject())


def test_list_v2_continues_over_more_than_1000_keys(bucket: oss2.Bucket, app: OssApp) -> None:
    keys = sorted(f"item/{i:05d}" for i in range(1205))
    _fast_fill(app, keys)
    listed: list[str] = []
    token, pages = "", 0
    while True:
        result = bucket.list_objects_v2(continuation_token=token, max_keys=1000)
        listed += [o.key for o in result.object_list]
        pages += 1
        if not result.is_truncated:
            break
        token = result.next_continuation_token
    assert (listed, pages) == (keys, 2)


def test_list_v1_iterator_pages_with_markers(bucket: oss2.Bucket, app: OssApp) -> None:
    keys = sorted(f"k{i:03d}" for i in range(23))
    _fast_fill(app, keys)
    assert [o.key for o in oss2.ObjectIterator(bucket, max_keys=5)] == keys


def test_delimiter_rolls_keys_into_common_prefixes(bucket: oss2.Bucket, app: OssApp) -> None:
    _fast_fill(app, ["a/1", "a/2", "b/x/1", "c", "d/"])
    result = bucket.list_objects_v2(delimiter="/")
    assert [o.key for o in result.object_list] == ["c"]
    assert result.prefix_list == ["a/", "b/", "d/"]


def test_delimiter_paging_never_repeats_a_prefix(bucket: oss2.Bucket, app: OssApp) -> None:
    _fast_fill(app, ["a/1", "a/2", "a/3", "b/1", "c"])
    seen = [o.key for o in oss2.ObjectIteratorV2(bucket, delimiter="/", max_keys=1)]
    assert seen == ["a/", "b/", "c"]


def test_prefix_and_start_after(bucket: oss2.Bucket, app: OssApp) -> None:
    _fast_fill(app, ["p/a", "p/b", "p/c", "q/a"])
    result = bucket.list_objects_v2(prefix="p/", start_after="p/a")
    assert [o.key for o in result.object_list] == ["p/b", "p/c"]


def test_url_encoding_carries_keys_xml_cannot(bucket: oss2.Bucket, app: OssApp) -> None:
    # \x01 is illegal in XML 1.0: the listing parses only if the keys really are URL-encoded
    keys = sorted(["sp ace", "plus+", "pct%25", "amp&<lt>", "ctl\x01", "ünï/cøde"])
    _fast_fill(app, keys)
    result = bucket.list_objects_v2(delimiter="/", encoding_type="url")
    assert [o.key for o in result.object_list] == [k for k in keys if "/" not in k]
    assert result.prefix_list == ["ünï/"]


def test_list_fetch_owner(bucket: oss2.Bucket) -> None:
    bucket.put_object("owned", b"1")
    assert bucket.list_objects_v2().object_list[0].owner is None
    assert bucket.list_objects_v2(fetch_owner=True).object_list[0].owner.id


def test_list_listing_reports_size_etag_and_time(bucket: oss2.Bucket) -> None:
    bucket.put_object("sized", b"abc")
    info = bucket.list_objects_v2().object_list[0]
    assert (info.size, info.etag, info.type) == (3, hashlib.md5(b"abc").hexdigest().upper(),
                                                 "Normal")
    assert info.last_modified > 0


def test_max_keys_over_1000_is_rejected(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.list_objects_v2(max_keys=1001)


# --- buckets -------------------------------------------------------------------------------
def test_bucket_info_reports_name_acl_and_location(bucket: oss2.Bucket) -> None:
    info = bucket.get_bucket_info()
    assert (info.name, info.acl.grant, info.location) == (BUCKET, "private", f"oss-{REGION}")
    assert bucket.get_bucket_location().location == f"oss-{REGION}"


def test_recreating_own_bucket_succeeds_and_updates_acl(bucket: oss2.Bucket) -> None:
    bucket.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ)
    assert bucket.get_bucket_info().acl.grant == "public-read"


def test_recreating_bucket_with_other_redundancy_conflicts(bucket: oss2.Bucket) -> None:
    config = oss2.models.BucketCreateConfig(oss2.BUCKET_STORAGE_CLASS_STANDARD,
                                            oss2.BUCKET_DATA_REDUNDANCY_TYPE_ZRS)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.create_bucket(input=config)
    assert (info.value.status, info.value.code) == (409, "BucketAlreadyExists")


def test_malformed_bucket_configuration_is_rejected(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.MalformedXml):
        bucket.create_bucket(input="<CreateBucketConfiguration><StorageClass>")


def test_delete_non_empty_bucket_conflicts(bucket: oss2.Bucket) -> None:
    bucket.put_object("k", b"1")
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        bucket.delete_bucket()


def test_deleted_bucket_is_gone(bucket: oss2.Bucket) -> None:
    bucket.delete_bucket()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket.get_bucket_info()


def test_list_buckets(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    service = oss2.Service(oss2.Auth(AK, SK), server.url)
    assert [b.name for b in service.list_buckets().buckets] == [BUCKET]


def test_invalid_bucket_name_is_rejected(server: EmulatorServer) -> None:
    # oss2 refuses such names client-side, so send the request by hand
    response = requests.put(f"{server.url}/Bad_Name/", timeout=5)
    assert response.status_code == 400
    assert b"<Code>InvalidBucketName</Code>" in response.content


# --- signatures and credentials ------------------------------------------------------------
def test_v4_signed_round_trip(bucket_v4: oss2.Bucket) -> None:
    bucket_v4.put_object("v4/key with space", b"v4 data", headers={"x-oss-meta-a": "b"})
    assert bucket_v4.get_object("v4/key with space").read() == b"v4 data"
    assert [o.key for o in bucket_v4.list_objects_v2(prefix="v4/").object_list] == [
        "v4/key with space"]


def test_v1_wrong_secret_fails_with_string_to_sign(server: EmulatorServer,
                                                   bucket: oss2.Bucket) -> None:
    wrong = oss2.Bucket(oss2.Auth(AK, "not-the-secret"), server.url, BUCKET)
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch) as info:
        wrong.get_object("anything")
    to_sign = info.value.details["StringToSign"]
    assert to_sign.startswith("GET\n") and to_sign.endswith(f"/{BUCKET}/anything")
    assert to_sign in info.value.message


def test_v4_wrong_secret_fails(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    wrong = oss2.Bucket(oss2.AuthV4(AK, "not-the-secret"), server.url, BUCKET, region=REGION)
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch) as info:
        wrong.put_object("k", b"v")
    assert info.value.details["StringToSign"].startswith("OSS4-HMAC-SHA256\n")


def test_unknown_access_key_is_rejected(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    stranger = oss2.Bucket(oss2.Auth("unknown", SK), server.url, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        stranger.get_object("k")
    assert (info.value.status, info.value.code) == (403, "InvalidAccessKeyId")


def test_sts_pair_with_its_token_works(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    sts = oss2.Bucket(oss2.StsAuth(STS_AK, STS_SK, STS_TOKEN), server.url, BUCKET)
    sts.put_object("sts", b"temporary")
    assert sts.get_object("sts").read() == b"temporary"


def test_sts_pair_without_token_is_rejected(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    tokenless = oss2.Bucket(oss2.Auth(STS_AK, STS_SK), server.url, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        tokenless.get_object("k")
    assert (info.value.status, info.value.code) == (403, "InvalidAccessKeyId")


def test_sts_pair_with_wrong_token_is_rejected(server: EmulatorServer,
                                               bucket: oss2.Bucket) -> None:
    forged = oss2.Bucket(oss2.StsAuth(STS_AK, STS_SK, "forged"), server.url, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as info:
        forged.get_object("k")
    assert info.value.status == 403


def test_v4_sts_pair_works(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    auth = oss2.StsAuth(STS_AK, STS_SK, STS_TOKEN, auth_version=oss2.AUTH_VERSION_4)
    sts = oss2.Bucket(auth, server.url, BUCKET, region=REGION)
    sts.put_object("sts4", b"v4 temporary")
    assert sts.get_object("sts4").read() == b"v4 temporary"


def test_presigned_url_works_then_expires_on_the_emulator_clock(
        own_server: EmulatorServer) -> None:
    bucket = oss2.Bucket(oss2.Auth(AK, SK), own_server.url, BUCKET)
    bucket.create_bucket()
    bucket.put_object("shared.txt", b"signed")
    url = bucket.sign_url("GET", "shared.txt", 60)
    assert requests.get(url, timeout=5).content == b"signed"
    requests.post(f"{own_server.url}/_emulator/clock", json={"advance": 120}, timeout=5)
    assert requests.get(url, timeout=5).status_code == 403


def test_anonymous_reads_public_read_bucket_but_cannot_write(
        server: EmulatorServer, bucket: oss2.Bucket) -> None:
    bucket.put_object("public.txt", b"open")
    bucket.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    anonymous = oss2.Bucket(oss2.AnonymousAuth(), server.url, BUCKET)
    assert anonymous.get_object("public.txt").read() == b"open"
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.put_object("public.txt", b"vandal")


def test_anonymous_access_to_private_bucket_is_denied(server: EmulatorServer,
                                                      bucket: oss2.Bucket) -> None:
    bucket.put_object("private.txt", b"closed")
    anonymous = oss2.Bucket(oss2.AnonymousAuth(), server.url, BUCKET)
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.get_object("private.txt")


# --- persistence ---------------------------------------------------------------------------
def test_objects_survive_restart(state_dir: Path) -> None:
    first = EmulatorServer(OssApp(KEYRING, state_dir)).start()
    try:
        b = oss2.Bucket(oss2.Auth(AK, SK), first.url, BUCKET)
        b.create_bucket()
        b.put_object("kept/ü.bin", b"durable", headers={"x-oss-meta-v": "1",
                                                        "Content-Type": "text/x-kept"})
    finally:
        first.stop()
    second = EmulatorServer(OssApp(KEYRING, state_dir)).start()
    try:
        b = oss2.Bucket(oss2.Auth(AK, SK), second.url, BUCKET)
        got = b.get_object("kept/ü.bin")
        assert (got.read(), got.content_type, got.headers["x-oss-meta-v"]) == (
            b"durable", "text/x-kept", "1")
    finally:
        second.stop()


def test_restart_sweeps_crash_leftovers(state_dir: Path) -> None:
    OssApp(KEYRING, state_dir).close()
    orphan_tmp = state_dir / "oss" / "tmp" / "half-written"
    orphan_blob = state_dir / "oss" / "blobs" / "ab" / "ab-unreferenced"
    orphan_blob.parent.mkdir(parents=True)
    orphan_tmp.write_bytes(b"partial")
    orphan_blob.write_bytes(b"never committed")
    OssApp(KEYRING, state_dir).close()
    assert not orphan_tmp.exists() and not orphan_blob.exists()


def test_concurrent_puts_all_land(bucket: oss2.Bucket) -> None:
    def put(i: int) -> None:
        bucket.put_object(f"t/{i}", str(i).encode())

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bucket.list_objects_v2(prefix="t/").object_list) == 8


# --- routing -------------------------------------------------------------------------------
def test_every_routed_action_has_an_operation_and_every_operation_a_route() -> None:
    assert set(ACCESS) == set(OPERATIONS)


def test_calls_are_counted_per_action(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    bucket.put_object("counted", b"1")
    bucket.get_object("counted").read()
    calls = requests.get(f"{server.url}/_emulator/calls", timeout=5).json()["calls"]
    assert (calls["PutBucket"], calls["PutObject"], calls["GetObject"]) == (1, 1, 1)


# --- control API ---------------------------------------------------------------------------
def test_fault_injection_fails_exactly_one_put(server: EmulatorServer,
                                               bucket: oss2.Bucket) -> None:
    requests.post(f"{server.url}/_emulator/faults", timeout=5,
                  json={"action": "PutObject", "code": "ServiceUnavailable", "status": 503})
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.put_object("faulty", b"1")
    assert (info.value.status, info.value.code) == (503, "ServiceUnavailable")
    bucket.put_object("faulty", b"2")
    assert bucket.get_object("faulty").read() == b"2"


def test_peek_lists_keys_without_a_signature(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    bucket.put_object("logs/a b.txt", b"12345")
    bucket.put_object("other", b"1")
    response = requests.get(f"{server.url}/_emulator/buckets/{BUCKET}/objects",
                            params={"prefix": "logs/"}, timeout=5)
    objects = response.json()["objects"]
    assert [(o["key"], o["size"], o["etag"]) for o in objects] == [
        ("logs/a b.txt", 5, hashlib.md5(b"12345").hexdigest().upper())]


def test_peek_at_missing_bucket_is_404(server: EmulatorServer) -> None:
    response = requests.get(f"{server.url}/_emulator/buckets/nope/objects", timeout=5)
    assert response.status_code == 404


def test_state_dump_counts_objects_and_bytes(server: EmulatorServer,
                                             bucket: oss2.Bucket) -> None:
    bucket.put_object("a", b"123")
    bucket.put_object("b", b"4567")
    state = requests.get(f"{server.url}/_emulator/state", timeout=5).json()
    assert (state["buckets"][BUCKET]["objects"], state["buckets"][BUCKET]["bytes"]) == (2, 7)


def test_reset_wipes_buckets_and_objects(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    bucket.put_object("a", b"1")
    requests.post(f"{server.url}/_emulator/reset", timeout=5)
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket.get_object("a")


def test_bucket_lookups_are_cached_and_never_stale(tmp_path: Path) -> None:
    """The store keeps committed buckets in memory: a write of the buckets table (committed or
    rolled back) is never hidden by it, and what another store on the directory sees agrees."""
    from local.emulators.oss.entities import Bucket
    from local.emulators.oss.store import OssStore

    store = OssStore(tmp_path)
    assert store.bucket("b") is None  # cached as absent
    store.insert_bucket(Bucket("b", 1.0, "private", "Standard", "LRS"))
    assert store.bucket("b") is not None and store.bucket("b").acl == "private"
    assert store.set_bucket_acl("b", "public-read")
    assert store.bucket("b").acl == "public-read"
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_bucket(Bucket("c", 1.0, "private", "Standard", "LRS"))
        assert store.bucket("c") is not None  # inside: what the transaction wrote
        raise RuntimeError("rolled back")
    assert store.bucket("c") is None  # the rolled-back insert left nothing behind
    store.delete_bucket("b")
    assert store.bucket("b") is None
    store.insert_bucket(Bucket("d", 1.0, "private", "Standard", "LRS"))
    store.wipe()
    assert store.bucket("d") is None
    store.close()


def test_shared_stores_never_serve_a_bucket_another_one_changed(tmp_path: Path) -> None:
    """Two stores on one directory, as two processes of one emulator keep them (``share``):
    each caches its lookups, and a bucket write in the other empties that cache — also when
    the lookup came while the write was not committed yet (it read the bucket as it was)."""
    from local.emulators.oss.entities import Bucket
    from local.emulators.oss.store import OssStore

    first, second = OssStore(tmp_path), OssStore(tmp_path)
    for store in (first, second):
        store.share()
    assert second.bucket("b") is None  # cached as absent
    first.insert_bucket(Bucket("b", 1.0, "private", "Standard", "LRS"))
    assert second.bucket("b") is not None
    first.set_bucket_acl("b", "public-read")
    assert second.bucket("b").acl == "public-read"
    with first.transaction():
        first.delete_bucket("b")
        assert second.bucket("b") is not None  # not committed yet: cached as it was
    assert second.bucket("b") is None  # committed: that copy is gone
    second.insert_bucket(Bucket("c", 1.0, "private", "Standard", "LRS"))
    assert first.bucket("c") is not None
    first.wipe()
    assert second.bucket("c") is None
    for store in (first, second):
        store.close()
