"""Multipart uploads through oss2 against the local OSS: the real ETag and CRC rules, listings
with their markers, part copies, and every refusal CompleteMultipartUpload documents."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import oss2
import pytest
import requests
from oss2.models import PartInfo

from local.emulators.oss import OssApp
from local.emulators.server import EmulatorServer
from tests.unit.oss_fixtures import AK, BUCKET, KEYRING, SK, client_crc

KB = 1024


def upload_parts(bucket: oss2.Bucket, key: str, parts: list[bytes]) -> tuple[str, list[PartInfo]]:
    upload_id = bucket.init_multipart_upload(key).upload_id
    infos = []
    for number, data in enumerate(parts, 1):
        result = bucket.upload_part(key, upload_id, number, data)
        infos.append(PartInfo(number, result.etag, size=len(data), part_crc=result.crc))
    return upload_id, infos


def test_complete_joins_parts_with_the_multipart_etag_and_whole_crc(bucket: oss2.Bucket) -> None:
    parts = [os.urandom(100 * KB), os.urandom(150 * KB), b"tail"]
    upload_id, infos = upload_parts(bucket, "big/data.bin", parts)
    result = bucket.complete_multipart_upload("big/data.bin", upload_id, infos)  # oss2 checks CRC
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    assert result.etag == hashlib.md5(digests).hexdigest().upper() + "-3"
    assert result.crc == client_crc(b"".join(parts))
    head = bucket.head_object("big/data.bin")
    assert (head.object_type, head.content_length, head.etag) == ("Multipart", 250 * KB + 4,
                                                                   result.etag)
    assert bucket.get_object("big/data.bin").read() == b"".join(parts)


def test_init_headers_become_the_objects_metadata(bucket: oss2.Bucket) -> None:
    key = "meta.bin"
    upload_id = bucket.init_multipart_upload(key, headers={
        "Content-Type": "text/csv", "x-oss-meta-owner": "ops", "x-oss-tagging": "k=v"}).upload_id
    etag = bucket.upload_part(key, upload_id, 1, b"a,b\n").etag
    bucket.complete_multipart_upload(key, upload_id, [PartInfo(1, etag)])
    head = bucket.head_object(key)
    assert (head.content_type, head.headers["x-oss-meta-owner"]) == ("text/csv", "ops")
    assert bucket.get_object_tagging(key).tag_set.tagging_rule == {"k": "v"}


def test_parts_left_out_are_discarded_and_numbers_may_skip(bucket: oss2.Bucket) -> None:
    upload_id, infos = upload_parts(bucket, "k", [os.urandom(100 * KB), b"two", b"three"])
    bucket.complete_multipart_upload("k", upload_id, [infos[0], PartInfo(3, infos[2].etag)])
    assert bucket.get_object("k").read()[100 * KB:] == b"three"


def test_complete_all_takes_every_uploaded_part(bucket: oss2.Bucket) -> None:
    upload_id, _ = upload_parts(bucket, "all", [os.urandom(100 * KB), b"end"])
    bucket.complete_multipart_upload("all", upload_id, None, headers={"x-oss-complete-all": "yes"})
    assert bucket.head_object("all").content_length == 100 * KB + 3


def test_reuploading_a_part_number_replaces_it(bucket: oss2.Bucket) -> None:
    upload_id, _ = upload_parts(bucket, "r", [b"first"])
    etag = bucket.upload_part("r", upload_id, 1, b"second").etag
    parts = bucket.list_parts("r", upload_id).parts
    assert [(p.part_number, p.etag, p.size) for p in parts] == [(1, etag, 6)]
    bucket.complete_multipart_upload("r", upload_id, [PartInfo(1, etag)])
    assert bucket.get_object("r").read() == b"second"


def test_small_part_before_the_last_is_entity_too_small(bucket: oss2.Bucket) -> None:
    upload_id, infos = upload_parts(bucket, "s", [b"small", b"last"])
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.complete_multipart_upload("s", upload_id, infos)
    assert (info.value.status, info.value.code) == (400, "EntityTooSmall")
    assert not bucket.object_exists("s")


def test_wrong_etag_or_missing_part_is_invalid_part(bucket: oss2.Bucket) -> None:
    upload_id, infos = upload_parts(bucket, "w", [b"only"])
    for parts in ([PartInfo(1, "0" * 32)], [infos[0], PartInfo(2, infos[0].etag)]):
        with pytest.raises(oss2.exceptions.ServerError) as info:
            bucket.complete_multipart_upload("w", upload_id, parts)
        assert (info.value.status, info.value.code) == (400, "InvalidPart")


def test_parts_out_of_order_are_invalid_part_order(bucket: oss2.Bucket) -> None:
    # oss2 sorts the parts it sends, so this request is signed by hand (a presigned V1 URL)
    upload_id, infos = upload_parts(bucket, "o", [os.urandom(100 * KB), b"2"])
    body = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{p.part_number}</PartNumber><ETag>\"{p.etag}\"</ETag></Part>"
        for p in reversed(infos)) + "</CompleteMultipartUpload>").encode()
    url = bucket.sign_url("POST", "o", 60, params={"uploadId": upload_id})
    response = requests.post(url, data=body, timeout=5)
    assert response.status_code == 400 and b"<Code>InvalidPartOrder</Code>" in response.content


def test_part_number_outside_1_to_10000_is_invalid_argument(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("n").upload_id
    for number in (0, 10001):
        with pytest.raises(oss2.exceptions.InvalidArgument):
            bucket.upload_part("n", upload_id, number, b"x")


def test_part_content_md5_is_checked(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("md5").upload_id
    with pytest.raises(oss2.exceptions.InvalidDigest):
        bucket.upload_part("md5", upload_id, 1, b"x",
                           headers={"Content-MD5": oss2.utils.content_md5(b"y")})


def test_aborted_upload_is_gone(bucket: oss2.Bucket) -> None:
    upload_id, infos = upload_parts(bucket, "a", [b"x"])
    bucket.abort_multipart_upload("a", upload_id)
    for call in (lambda: bucket.upload_part("a", upload_id, 2, b"y"),
                 lambda: bucket.list_parts("a", upload_id),
                 lambda: bucket.complete_multipart_upload("a", upload_id, infos),
                 lambda: bucket.abort_multipart_upload("a", upload_id)):
        with pytest.raises(oss2.exceptions.NoSuchUpload):
            call()


def test_upload_id_of_another_key_is_no_such_upload(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("one").upload_id
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.upload_part("two", upload_id, 1, b"x")


def test_upload_part_copy_takes_a_range_of_the_source(bucket: oss2.Bucket) -> None:
    source = os.urandom(300 * KB)
    bucket.put_object("src/ü file", source)
    upload_id = bucket.init_multipart_upload("copy").upload_id
    first = bucket.upload_part_copy(bucket.bucket_name, "src/ü file", (0, 100 * KB - 1), "copy",
                                    upload_id, 1)
    second = bucket.upload_part_copy(bucket.bucket_name, "src/ü file", (100 * KB, None), "copy",
                                     upload_id, 2)
    assert first.etag == hashlib.md5(source[:100 * KB]).hexdigest().upper()
    bucket.complete_multipart_upload("copy", upload_id, [PartInfo(1, first.etag),
                                                         PartInfo(2, second.etag)])
    assert bucket.get_object("copy").read() == source


def test_upload_part_copy_of_a_missing_source_is_no_such_key(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("copy").upload_id
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.upload_part_copy(bucket.bucket_name, "nothing", None, "copy", upload_id, 1)


def test_list_parts_pages_with_its_marker(bucket: oss2.Bucket) -> None:
    upload_id, _ = upload_parts(bucket, "p", [b"1", b"2", b"3", b"4", b"5"])
    first = bucket.list_parts("p", upload_id, max_parts=2)
    assert ([p.part_number for p in first.parts], first.is_truncated, first.next_marker) == (
        [1, 2], True, "2")
    assert [p.part_number for p in oss2.PartIterator(bucket, "p", upload_id, max_parts=2)] == [
        1, 2, 3, 4, 5]


def test_list_multipart_uploads_with_prefix_delimiter_and_markers(bucket: oss2.Bucket) -> None:
    ids = {key: [bucket.init_multipart_upload(key).upload_id for _ in range(2)]
           for key in ("logs/a", "logs/b", "logs/sub/c", "other")}
    every = [(u.key, u.upload_id) for u in oss2.MultipartUploadIterator(bucket, max_uploads=3)]
    assert every == sorted((k, i) for k, v in ids.items() for i in v)
    page = bucket.list_multipart_uploads(prefix="logs/", delimiter="/", max_uploads=3)
    assert [(u.key, u.upload_id) for u in page.upload_list] == [
        ("logs/a", ids["logs/a"][0]), ("logs/a", ids["logs/a"][1]), ("logs/b", ids["logs/b"][0])]
    assert (page.is_truncated, page.next_key_marker, page.next_upload_id_marker) == (
        True, "logs/b", ids["logs/b"][0])
    rest = bucket.list_multipart_uploads(prefix="logs/", delimiter="/",
                                         key_marker=page.next_key_marker,
                                         upload_id_marker=page.next_upload_id_marker)
    assert [u.upload_id for u in rest.upload_list] == [ids["logs/b"][1]]
    assert (rest.prefix_list, rest.is_truncated) == (["logs/sub/"], False)
    after_key = bucket.list_multipart_uploads(key_marker="logs/sub/c")
    assert [u.key for u in after_key.upload_list] == ["other", "other"]


def test_resumable_upload_and_download_run_unchanged(bucket: oss2.Bucket, tmp_path: Path) -> None:
    data = os.urandom(450 * KB)
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(data)
    oss2.resumable_upload(bucket, "resumable.bin", str(source), multipart_threshold=100 * KB,
                          part_size=100 * KB, num_threads=3,
                          store=oss2.ResumableStore(root=str(tmp_path)))
    assert bucket.head_object("resumable.bin").object_type == "Multipart"
    oss2.resumable_download(bucket, "resumable.bin", str(target), multiget_threshold=100 * KB,
                            part_size=100 * KB, num_threads=3,
                            store=oss2.ResumableDownloadStore(root=str(tmp_path)))
    assert target.read_bytes() == data


def test_bucket_with_an_upload_in_progress_is_not_empty(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("pending").upload_id
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        bucket.delete_bucket()
    assert bucket.get_bucket_stat().multi_part_upload_count == 1
    bucket.abort_multipart_upload("pending", upload_id)
    bucket.delete_bucket()


def test_uploads_parts_tags_and_types_survive_a_restart(state_dir: Path) -> None:
    def start() -> tuple[EmulatorServer, oss2.Bucket]:
        server = EmulatorServer(OssApp(KEYRING, state_dir)).start()
        return server, oss2.Bucket(oss2.Auth(AK, SK), server.url, BUCKET)

    server, bucket = start()
    try:
        bucket.create_bucket()
        upload_id, infos = upload_parts(bucket, "later", [os.urandom(100 * KB), b"end"])
        bucket.append_object("log", 0, b"abc", headers={"x-oss-tagging": "k=v",
                                                        "x-oss-object-acl": "private"})
        bucket.put_symlink("log", "link")
    finally:
        server.stop()
    server, bucket = start()
    try:
        assert [p.part_number for p in bucket.list_parts("later", upload_id).parts] == [1, 2]
        bucket.complete_multipart_upload("later", upload_id, infos)
        assert bucket.head_object("later").object_type == "Multipart"
        assert bucket.append_object("log", 3, b"def").next_position == 6
        assert bucket.get_object_tagging("log").tag_set.tagging_rule == {"k": "v"}
        assert bucket.get_object_acl("log").acl == "private"
        assert bucket.get_object("link").read() == b"abcdef"
    finally:
        server.stop()
