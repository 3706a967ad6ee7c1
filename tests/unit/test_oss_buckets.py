"""Buckets through oss2 against the local OSS: create with ACL and storage class, delete, info,
location, listing with prefix / marker / max-keys, ACL."""

from __future__ import annotations

import oss2
import pytest
from oss2.models import BucketCreateConfig

from local.emulators.server import EmulatorServer
from tests.unit.oss_fixtures import AK, SK


def named(server: EmulatorServer, name: str) -> oss2.Bucket:
    return oss2.Bucket(oss2.Auth(AK, SK), server.url, name)


def test_create_with_acl_and_standard_storage_class(server: EmulatorServer) -> None:
    bucket = named(server, "made-here")
    bucket.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ,
                         BucketCreateConfig(oss2.BUCKET_STORAGE_CLASS_STANDARD))
    info = bucket.get_bucket_info()
    assert (info.name, info.acl.grant, info.storage_class) == ("made-here", "public-read",
                                                              "Standard")
    assert bucket.get_bucket_acl().acl == "public-read"
    assert bucket.get_bucket_location().location == "oss-cn-hangzhou"


@pytest.mark.parametrize("storage_class", ["IA", "Archive", "ColdArchive", "DeepColdArchive"])
def test_other_storage_classes_are_refused_and_nothing_is_made(server: EmulatorServer,
                                                               storage_class: str) -> None:
    bucket = named(server, "cold-bucket")
    with pytest.raises(oss2.exceptions.InvalidArgument) as info:
        bucket.create_bucket(input=BucketCreateConfig(storage_class))
    assert "not supported" in info.value.message
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket.get_bucket_info()


def test_bad_acl_or_class_name_is_invalid_argument(server: EmulatorServer) -> None:
    with pytest.raises(oss2.exceptions.InvalidArgument):
        named(server, "b-acl").create_bucket("everyone")
    with pytest.raises(oss2.exceptions.InvalidArgument):
        named(server, "b-class").create_bucket(input=BucketCreateConfig("Lukewarm"))


def test_bucket_acl_round_trip_and_errors(bucket: oss2.Bucket) -> None:
    for acl in (oss2.BUCKET_ACL_PUBLIC_READ_WRITE, oss2.BUCKET_ACL_PRIVATE):
        bucket.put_bucket_acl(acl)
        assert bucket.get_bucket_acl().acl == acl
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.put_bucket_acl("default")  # an object ACL, not a bucket's


def test_list_buckets_with_prefix_marker_and_max_keys(server: EmulatorServer) -> None:
    for name in ("team-a", "team-b", "team-c", "zeta"):
        named(server, name).create_bucket()
    service = oss2.Service(oss2.Auth(AK, SK), server.url)
    page = service.list_buckets(prefix="team-", max_keys=2)
    assert ([b.name for b in page.buckets], page.is_truncated, page.next_marker) == (
        ["team-a", "team-b"], True, "team-b")
    rest = service.list_buckets(prefix="team-", marker=page.next_marker)
    assert ([b.name for b in rest.buckets], rest.is_truncated) == (["team-c"], False)
    assert [b.name for b in oss2.BucketIterator(service, max_keys=1)] == [
        "team-a", "team-b", "team-c", "zeta"]
    assert all(b.location == "oss-cn-hangzhou" for b in rest.buckets)


def test_delete_is_refused_while_objects_remain(bucket: oss2.Bucket) -> None:
    bucket.put_object("left", b"x")
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        bucket.delete_bucket()
    bucket.delete_object("left")
    bucket.delete_bucket()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket.delete_bucket()


def test_bucket_stat_counts_objects_bytes_and_uploads(bucket: oss2.Bucket) -> None:
    bucket.put_object("a", b"123")
    bucket.append_object("b", 0, b"45")
    bucket.init_multipart_upload("c")
    stat = bucket.get_bucket_stat()
    assert (stat.object_count, stat.storage_size_in_bytes, stat.multi_part_upload_count) == (
        2, 5, 1)
