"""Object ACLs, tags, symlinks and restore through oss2 against the local OSS."""

from __future__ import annotations

import oss2
import pytest
from oss2.models import Tagging, TaggingRule

from local.emulators.server import EmulatorServer


def tagging(**tags: str) -> Tagging:
    rule = TaggingRule()
    for key, value in tags.items():
        rule.add(key, value)
    return Tagging(rule)


# --- object ACL ------------------------------------------------------------------------------
def test_object_acl_defaults_and_changes(bucket: oss2.Bucket) -> None:
    bucket.put_object("o", b"x")
    assert bucket.get_object_acl("o").acl == "default"
    for acl in (oss2.OBJECT_ACL_PRIVATE, oss2.OBJECT_ACL_PUBLIC_READ,
                oss2.OBJECT_ACL_PUBLIC_READ_WRITE, oss2.OBJECT_ACL_DEFAULT):
        bucket.put_object_acl("o", acl)
        assert bucket.get_object_acl("o").acl == acl
    bucket.put_object("p", b"x", headers={"x-oss-object-acl": "private"})
    assert bucket.get_object_acl("p").acl == "private"


def test_object_acl_errors(bucket: oss2.Bucket) -> None:
    bucket.put_object("o", b"x")
    with pytest.raises(oss2.exceptions.InvalidArgument):
        bucket.put_object_acl("o", "world-writable")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.put_object_acl("missing", oss2.OBJECT_ACL_PRIVATE)
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object_acl("missing")


def test_object_acl_rules_anonymous_reads(server: EmulatorServer, bucket: oss2.Bucket) -> None:
    bucket.put_object("open", b"public", headers={"x-oss-object-acl": "public-read"})
    bucket.put_object("closed", b"secret")
    anonymous = oss2.Bucket(oss2.AnonymousAuth(), server.url, bucket.bucket_name)
    assert anonymous.get_object("open").read() == b"public"
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.get_object("closed")
    bucket.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    bucket.put_object_acl("closed", oss2.OBJECT_ACL_PRIVATE)
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.get_object("closed")


# --- tagging ---------------------------------------------------------------------------------
def test_tagging_put_get_delete(bucket: oss2.Bucket) -> None:
    bucket.put_object("t", b"x")
    assert bucket.get_object_tagging("t").tag_set.tagging_rule == {}
    bucket.put_object_tagging("t", tagging(team="ops", **{"a b": "c/d+e"}))
    assert bucket.get_object_tagging("t").tag_set.tagging_rule == {"team": "ops", "a b": "c/d+e"}
    assert bucket.head_object("t").headers["x-oss-tagging-count"] == "2"
    bucket.delete_object_tagging("t")
    assert bucket.get_object_tagging("t").tag_set.tagging_rule == {}
    assert "x-oss-tagging-count" not in bucket.head_object("t").headers


def test_tagging_header_on_put_is_url_encoded_pairs(bucket: oss2.Bucket) -> None:
    bucket.put_object("t", b"x", headers={"x-oss-tagging": "k1=v1&k%202=v%2F2&flag"})
    assert bucket.get_object_tagging("t").tag_set.tagging_rule == {
        "k1": "v1", "k 2": "v/2", "flag": ""}


def test_tagging_limits(bucket: oss2.Bucket) -> None:
    # oss2 refuses long keys itself; the header reaches the service with anything
    too_many = "&".join(f"k{n}=v" for n in range(11))
    for bad in (too_many, "k" * 129 + "=v", "k=" + "v" * 257, "aa=bb=cc", "k=1&k=2"):
        with pytest.raises(oss2.exceptions.ServerError) as info:
            bucket.put_object("u", b"x", headers={"x-oss-tagging": bad})
        assert (info.value.status, info.value.code) == (400, "InvalidTag")
    assert not bucket.object_exists("u")
    bucket.put_object("t", b"x")
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.put_object_tagging("t", tagging(**{f"k{n}": "v" for n in range(11)}))
    assert (info.value.status, info.value.code) == (400, "InvalidTag")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.put_object_tagging("missing", tagging(k="v"))


def test_copy_keeps_or_replaces_tags(bucket: oss2.Bucket) -> None:
    bucket.put_object("src", b"x", headers={"x-oss-tagging": "a=1"})
    bucket.copy_object(bucket.bucket_name, "src", "kept")
    bucket.copy_object(bucket.bucket_name, "src", "replaced",
                       headers={"x-oss-tagging-directive": "REPLACE", "x-oss-tagging": "b=2"})
    assert bucket.get_object_tagging("kept").tag_set.tagging_rule == {"a": "1"}
    assert bucket.get_object_tagging("replaced").tag_set.tagging_rule == {"b": "2"}


def test_tags_and_acl_leave_last_modified_alone(bucket: oss2.Bucket, app: object) -> None:
    bucket.put_object("t", b"x")
    before = bucket.head_object("t").last_modified
    app.clock.advance(3)  # type: ignore[attr-defined]
    bucket.put_object_tagging("t", tagging(k="v"))
    bucket.put_object_acl("t", oss2.OBJECT_ACL_PRIVATE)
    assert bucket.head_object("t").last_modified == before


# --- symlinks --------------------------------------------------------------------------------
def test_symlink_reads_its_target(bucket: oss2.Bucket) -> None:
    bucket.put_object("dir/target ü", b"the bytes", headers={"Content-Type": "text/plain"})
    bucket.put_symlink("dir/target ü", "link", headers={"x-oss-meta-why": "alias"})
    assert bucket.get_symlink("link").target_key == "dir/target ü"
    result = bucket.get_object("link")
    assert (result.read(), result.content_type) == (b"the bytes", "text/plain")
    head = bucket.head_object("link")
    assert (head.object_type, head.content_length) == ("Symlink", 9)
    assert head.headers["x-oss-meta-why"] == "alias"
    types = {o.key: o.type for o in oss2.ObjectIteratorV2(bucket)}
    assert types == {"dir/target ü": "Normal", "link": "Symlink"}


def test_symlink_errors(bucket: oss2.Bucket) -> None:
    bucket.put_symlink("nowhere", "dangling")  # the target is not checked when linking
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("dangling")
    bucket.put_object("plain", b"x")
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.get_symlink("plain")
    assert (info.value.status, info.value.code) == (400, "NotSymlink")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_symlink("missing")
    with pytest.raises(oss2.exceptions.ObjectNotAppendable):
        bucket.append_object("dangling", 0, b"x")


def test_deleting_a_symlink_leaves_the_target(bucket: oss2.Bucket) -> None:
    bucket.put_object("target", b"x")
    bucket.put_symlink("target", "link")
    bucket.delete_object("link")
    assert bucket.get_object("target").read() == b"x"


# --- restore ---------------------------------------------------------------------------------
def test_restore_of_a_standard_object_is_not_supported(bucket: oss2.Bucket) -> None:
    bucket.put_object("std", b"x")
    with pytest.raises(oss2.exceptions.OperationNotSupported) as info:
        bucket.restore_object("std")
    assert info.value.status == 400
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.restore_object("missing")
