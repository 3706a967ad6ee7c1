"""A broad external OSS client workload against the local OSS, written as a user would write it:
oss2 only, given nothing but an endpoint and a key pair, no assistflow code and no change to the
client. Buckets are created, filled with simple, multipart (by hand and through oss2's
resumable upload) and appended objects, copied, tagged, listed with every option, batch-deleted,
and removed by the usual clean-up code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import oss2
from oss2.models import BucketCreateConfig, PartInfo, Tagging, TaggingRule

KB = 1024
PREFIX = "workload-"


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def clean_up(service: oss2.Service, auth: oss2.Auth, endpoint: str) -> list[str]:
    """The clean-up code found in test suites and scripts everywhere: every bucket with our
    prefix, emptied object by object page (batches of at most 1000), every unfinished multipart
    upload aborted, then the bucket deleted."""
    removed = []
    for info in oss2.BucketIterator(service, prefix=PREFIX):
        bucket = oss2.Bucket(auth, endpoint, info.name)
        keys = [obj.key for obj in oss2.ObjectIteratorV2(bucket)]
        for batch in chunks(keys, 1000):
            bucket.batch_delete_objects(batch)
        for upload in oss2.MultipartUploadIterator(bucket):
            bucket.abort_multipart_upload(upload.key, upload.upload_id)
        assert not list(oss2.ObjectIterator(bucket))
        bucket.delete_bucket()
        removed.append(info.name)
    return removed


def test_external_client_workload(oss_account: dict[str, str], tmp_path: Path) -> None:
    endpoint = oss_account["endpoint"]
    auth = oss2.Auth(oss_account["access_key_id"], oss_account["access_key_secret"])
    service = oss2.Service(auth, endpoint)

    # --- buckets ----------------------------------------------------------------------------
    data = oss2.Bucket(auth, endpoint, PREFIX + "data")
    data.create_bucket(oss2.BUCKET_ACL_PRIVATE,
                       BucketCreateConfig(oss2.BUCKET_STORAGE_CLASS_STANDARD))
    archive = oss2.Bucket(auth, endpoint, PREFIX + "archive")
    archive.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ)
    assert [b.name for b in service.list_buckets(prefix=PREFIX).buckets] == [
        PREFIX + "archive", PREFIX + "data"]
    assert data.get_bucket_info().storage_class == "Standard"

    # --- fill: simple, multipart, resumable, appended ---------------------------------------
    for day in range(1, 13):
        data.put_object(f"reports/2024/{day:02d}/summary.json", b'{"day": %d}' % day,
                        headers={"Content-Type": "application/json",
                                 "x-oss-meta-day": str(day), "x-oss-tagging": "kind=report"})
    data.put_object("reports/readme ü.txt", b"read me")
    parts = [os.urandom(120 * KB), os.urandom(100 * KB), os.urandom(30 * KB)]
    upload_id = data.init_multipart_upload("blobs/model.bin").upload_id
    infos = [PartInfo(n, data.upload_part("blobs/model.bin", upload_id, n, part).etag)
             for n, part in enumerate(parts, 1)]
    data.complete_multipart_upload("blobs/model.bin", upload_id, infos)
    local_file = tmp_path / "dataset.csv"
    local_file.write_bytes(os.urandom(420 * KB))
    oss2.resumable_upload(data, "blobs/dataset.csv", str(local_file), part_size=100 * KB,
                          multipart_threshold=100 * KB, num_threads=2,
                          store=oss2.ResumableStore(root=str(tmp_path)))
    position = 0
    for line in range(5):
        position = data.append_object("logs/app.log", position, f"line {line}\n".encode()).next_position
    assert data.get_object("logs/app.log").read().count(b"\n") == 5
    assert data.get_object("blobs/model.bin").read() == b"".join(parts)
    assert hashlib.md5(data.get_object("blobs/dataset.csv").read()).digest() == hashlib.md5(
        local_file.read_bytes()).digest()
    pending = data.init_multipart_upload("blobs/abandoned.bin").upload_id
    data.upload_part("blobs/abandoned.bin", pending, 1, b"never completed")

    # --- copy --------------------------------------------------------------------------------
    archive.copy_object(data.bucket_name, "reports/2024/01/summary.json", "2024/01.json")
    data.update_object_meta("reports/readme ü.txt", {"x-oss-meta-reviewed": "yes",
                                                     "Content-Type": "text/plain"})
    copy_id = archive.init_multipart_upload("big/model-copy.bin").upload_id
    source_size = data.head_object("blobs/model.bin").content_length
    copied = [archive.upload_part_copy(data.bucket_name, "blobs/model.bin", (0, 150 * KB - 1),
                                       "big/model-copy.bin", copy_id, 1),
              archive.upload_part_copy(data.bucket_name, "blobs/model.bin",
                                       (150 * KB, source_size - 1), "big/model-copy.bin",
                                       copy_id, 2)]
    archive.complete_multipart_upload("big/model-copy.bin", copy_id,
                                      [PartInfo(n, c.etag) for n, c in enumerate(copied, 1)])
    assert archive.get_object("big/model-copy.bin").read() == b"".join(parts)
    assert data.head_object("reports/readme ü.txt").headers["x-oss-meta-reviewed"] == "yes"

    # --- tag ---------------------------------------------------------------------------------
    rule = TaggingRule()
    rule.add("owner", "data-team")
    rule.add("retention", "30d")
    data.put_object_tagging("blobs/model.bin", Tagging(rule))
    assert data.get_object_tagging("blobs/model.bin").tag_set.tagging_rule == {
        "owner": "data-team", "retention": "30d"}
    assert data.get_object_tagging("reports/2024/03/summary.json").tag_set.tagging_rule == {
        "kind": "report"}

    # --- list with every option --------------------------------------------------------------
    everything = [o.key for o in oss2.ObjectIterator(data, max_keys=4)]
    assert everything == sorted(everything) and len(everything) == 16
    top = [(o.key, o.is_prefix()) for o in oss2.ObjectIterator(data, delimiter="/")]
    assert top == [("blobs/", True), ("logs/", True), ("reports/", True)]
    months = [o.key for o in oss2.ObjectIteratorV2(data, prefix="reports/2024/", delimiter="/",
                                                   max_keys=5)]
    assert months == [f"reports/2024/{d:02d}/" for d in range(1, 13)]
    after = [o.key for o in oss2.ObjectIteratorV2(data, prefix="reports/",
                                                  start_after="reports/2024/10/summary.json")]
    assert after == ["reports/2024/11/summary.json", "reports/2024/12/summary.json",
                     "reports/readme ü.txt"]
    owned = list(oss2.ObjectIteratorV2(data, prefix="blobs/", fetch_owner=True))
    assert all(o.owner is not None for o in owned)
    assert {o.key: o.type for o in owned} == {"blobs/dataset.csv": "Multipart",
                                              "blobs/model.bin": "Multipart"}
    token, paged = "", []
    while True:
        page = data.list_objects_v2(prefix="reports/2024/", max_keys=5, continuation_token=token)
        paged += [o.key for o in page.object_list]
        if not page.is_truncated:
            break
        token = page.next_continuation_token
    assert len(paged) == 12
    marker, v1 = "", []
    while True:
        result = data.list_objects(prefix="reports/", marker=marker, max_keys=7)
        v1 += [o.key for o in result.object_list]
        if not result.is_truncated:
            break
        marker = result.next_marker
    assert len(v1) == 13
    assert [u.key for u in oss2.MultipartUploadIterator(data)] == ["blobs/abandoned.bin"]

    # --- batch delete -------------------------------------------------------------------------
    old = [f"reports/2024/{d:02d}/summary.json" for d in range(1, 7)]
    assert sorted(data.batch_delete_objects(old).deleted_keys) == old
    assert len(list(oss2.ObjectIteratorV2(data, prefix="reports/2024/"))) == 6

    # --- the usual clean-up -------------------------------------------------------------------
    assert clean_up(service, auth, endpoint) == [PREFIX + "archive", PREFIX + "data"]
    assert not list(oss2.BucketIterator(service, prefix=PREFIX))
