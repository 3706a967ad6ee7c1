"""Listings (v1 and v2, every option) and batch deletion through oss2 against the local OSS."""

from __future__ import annotations

from typing import Any

import oss2
import pytest

KEYS = ["a.txt", "docs/2024/jan.md", "docs/2024/feb.md", "docs/readme.md", "docs/ü nicode.md",
        "logs/x\x01ctl.log", "z+plus&amp;=?.bin"]


@pytest.fixture
def filled(bucket: oss2.Bucket) -> oss2.Bucket:
    for key in KEYS:
        bucket.put_object(key, key.encode())
    return bucket


def test_v1_and_v2_list_every_key_decoded(filled: oss2.Bucket) -> None:
    assert [o.key for o in oss2.ObjectIterator(filled, max_keys=2)] == sorted(KEYS)
    assert [o.key for o in oss2.ObjectIteratorV2(filled, max_keys=2)] == sorted(KEYS)


@pytest.mark.parametrize("iterator", [oss2.ObjectIterator, oss2.ObjectIteratorV2])
def test_prefix_and_delimiter_page_by_page(filled: oss2.Bucket, iterator: Any) -> None:
    listed = [(o.key, o.is_prefix()) for o in iterator(filled, prefix="docs/", delimiter="/",
                                                       max_keys=1)]
    assert listed == [("docs/2024/", True), ("docs/readme.md", False),
                      ("docs/ü nicode.md", False)]


def test_v1_marker_and_next_marker(filled: oss2.Bucket) -> None:
    page = filled.list_objects(prefix="docs/", max_keys=2)
    assert (page.is_truncated, page.next_marker) == (True, "docs/2024/jan.md")
    rest = filled.list_objects(prefix="docs/", marker=page.next_marker)
    assert [o.key for o in rest.object_list] == ["docs/readme.md", "docs/ü nicode.md"]
    assert not rest.is_truncated


def test_v2_start_after_continuation_token_and_key_count(filled: oss2.Bucket) -> None:
    page = filled.list_objects_v2(start_after="a.txt", max_keys=3, delimiter="/")
    assert [p for p in page.prefix_list] == ["docs/", "logs/"]
    assert [o.key for o in page.object_list] == ["z+plus&amp;=?.bin"]
    page = filled.list_objects_v2(prefix="docs/", max_keys=2)
    assert page.is_truncated and page.next_continuation_token
    rest = filled.list_objects_v2(prefix="docs/", continuation_token=page.next_continuation_token,
                                  start_after="zzz")  # the token wins over start-after
    assert [o.key for o in rest.object_list] == ["docs/readme.md", "docs/ü nicode.md"]


def test_v2_fetch_owner(filled: oss2.Bucket) -> None:
    assert all(o.owner is None for o in filled.list_objects_v2().object_list)
    assert all(o.owner and o.owner.id for o in filled.list_objects_v2(fetch_owner=True).object_list)


def test_listing_entries_carry_size_etag_type_and_class(filled: oss2.Bucket) -> None:
    entry = filled.list_objects_v2(prefix="a.txt").object_list[0]
    assert (entry.size, entry.type, entry.storage_class) == (5, "Normal", "Standard")
    assert entry.etag == filled.head_object("a.txt").etag


def test_bad_listing_arguments(filled: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.InvalidArgument):
        filled.list_objects_v2(continuation_token="not base64 !")
    with pytest.raises(oss2.exceptions.InvalidArgument):
        filled.list_objects(max_keys=0)


# --- batch delete ----------------------------------------------------------------------------
def batch(bucket: oss2.Bucket, body: bytes, md5: str | None = None,
          params: dict[str, str] | None = None) -> Any:
    """POST ?delete as any client may send it (oss2's own call is always verbose)."""
    headers = {} if md5 is None else {"Content-MD5": md5}
    return bucket._Bucket__do_bucket("POST", data=body, headers=headers,  # type: ignore[attr-defined]
                                     params={"delete": "", **(params or {})})


def delete_body(keys: list[str], quiet: bool) -> bytes:
    from xml.sax.saxutils import escape

    items = "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
    return f"<Delete><Quiet>{str(quiet).lower()}</Quiet>{items}</Delete>".encode()


def test_batch_delete_verbose_reports_each_key_missing_ones_too(filled: oss2.Bucket) -> None:
    keys = ["a.txt", "docs/ü nicode.md", "logs/x\x01ctl.log", "never-there"]
    result = filled.batch_delete_objects(keys)  # encoding-type=url, Content-MD5, verbose
    assert sorted(result.deleted_keys) == sorted(keys)
    assert sorted(o.key for o in oss2.ObjectIterator(filled)) == sorted(set(KEYS) - set(keys))


def test_batch_delete_quiet_answers_no_body(filled: oss2.Bucket) -> None:
    body = delete_body(["a.txt", "z+plus&amp;=?.bin"], quiet=True)
    response = batch(filled, body, oss2.utils.content_md5(body), {"encoding-type": "url"})
    assert (response.status, response.read()) == (200, b"")
    assert not filled.object_exists("a.txt") and not filled.object_exists("z+plus&amp;=?.bin")


def test_batch_delete_checks_content_md5_and_size(filled: oss2.Bucket) -> None:
    body = delete_body(["a.txt"], quiet=False)
    with pytest.raises(oss2.exceptions.InvalidDigest):
        batch(filled, body, oss2.utils.content_md5(b"other"))
    with pytest.raises(oss2.exceptions.InvalidRequest):
        batch(filled, body)
    big = delete_body([f"k{n}" for n in range(1001)], quiet=True)
    with pytest.raises(oss2.exceptions.MalformedXml):
        batch(filled, big, oss2.utils.content_md5(big))
    with pytest.raises(oss2.exceptions.MalformedXml):
        batch(filled, b"<Delete><Object>", oss2.utils.content_md5(b"<Delete><Object>"))
    assert filled.object_exists("a.txt")
