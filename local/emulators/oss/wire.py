"""OSS on the wire: parse a path-style request and render answers (headers, XML, errors).

Keys arrive percent-encoded with ``/`` as ``%2F`` (oss2 quotes with ``safe=''``), so the bucket
and key are split on the raw request URI and only then unquoted; werkzeug's decoded ``path``
would merge ``a%2Fb`` and ``a/b``. Rendering follows what oss2's parsers read
(oss2 2.19.1 ``oss2.xml_utils``, ``oss2.models``).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import BinaryIO
from urllib.parse import parse_qsl, quote, unquote_to_bytes
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from local.emulators.base import ServiceError
from local.emulators.server import raw_headers

from .entities import APPENDABLE, Conditions, NewObject, ObjectMeta, valid_bucket_name
from .errors import (
    IncompleteBody,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidEncryptionAlgorithmError,
    InvalidObjectName,
    InvalidRange,
    InvalidTag,
    KmsServiceNotEnabled,
    MalformedXML,
)
from .signing import RequestParts

OWNER_ID = "1000000000000001"  # the emulator's single account
XML_TYPE = "application/xml"
OUT_CHUNK = 256 * 1024
STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language",
                  "expires")
RESPONSE_OVERRIDES = {f"response-{h}": h for h in (
    "content-type", "content-language", "expires", "cache-control", "content-disposition",
    "content-encoding")}


# --- parsing ---------------------------------------------------------------------------------
def unquote_key(raw: str, what: str) -> str:
    try:  # WSGI strings are latin-1 stand-ins for the raw bytes
        return unquote_to_bytes(raw.encode("latin-1")).decode("utf-8")
    except (UnicodeError, ValueError):
        error = {"key": InvalidObjectName, "tag": InvalidTag}.get(what, InvalidBucketName)
        raise error(f"The {what} must be valid UTF-8 once percent-decoded.") from None


def parse_request(request: Request) -> RequestParts:
    """Bucket and key from the raw URI, the decoded query, and headers by lower-case name."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING", "")
        raw = quote(environ.get("PATH_INFO", "/")) + (f"?{query}" if query else "")
    raw_path, _, raw_query = raw.partition("?")
    if raw_path.startswith(("http://", "https://")):  # absolute-form target (via a proxy)
        raw_path = "/" + raw_path.split("/", 3)[3] if raw_path.count("/") >= 3 else "/"
    raw_bucket, _, raw_key = raw_path.lstrip("/").partition("/")
    bucket = unquote_key(raw_bucket, "bucket")
    if bucket and not valid_bucket_name(bucket):
        raise InvalidBucketName(BucketName=bucket)
    headers = raw_headers(environ)
    params = dict(parse_qsl(raw_query, keep_blank_values=True))
    return RequestParts(request.method, bucket, unquote_key(raw_key, "key"), params, headers)


# --- rendering helpers -----------------------------------------------------------------------
def http_date(ts: float) -> str:
    # two-digit day: oss2 2.19.1 oss2.utils.http_to_unixtime rejects anything else
    return formatdate(int(ts), usegmt=True)


def iso8601(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(int(ts)))


def el(tag: str, text: object) -> str:
    return f"<{tag}>{escape(str(text))}</{tag}>"


def xml_response(root: str, body: str, status: int = 200) -> Response:
    doc = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{body}</{root}>'
    return Response(doc.encode("utf-8"), status=status, content_type=XML_TYPE)


def error_xml(error: ServiceError, request_id: str, host: str) -> bytes:
    extra = "".join(el(k, v) for k, v in error.fields.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{el("Code", error.code)}'
            f'{el("Message", error.message)}{el("RequestId", request_id)}'
            f'{el("HostId", host)}{extra}</Error>').encode()


def owner_xml() -> str:
    return f"<Owner>{el('ID', OWNER_ID)}{el('DisplayName', OWNER_ID)}</Owner>"


def endpoints_xml(region: str) -> str:
    return (el("ExtranetEndpoint", f"oss-{region}.aliyuncs.com")
            + el("IntranetEndpoint", f"oss-{region}-internal.aliyuncs.com")
            + el("Location", f"oss-{region}"))


def object_headers(obj: ObjectMeta) -> dict[str, str]:
    headers = {
        "Content-Type": obj.content_type, "ETag": obj.quoted_etag,
        "Last-Modified": http_date(obj.last_modified), "x-oss-object-type": obj.kind,
        "x-oss-hash-crc64ecma": str(obj.crc64), "x-oss-storage-class": obj.storage_class,
        "Accept-Ranges": "bytes",
    }
    if obj.kind == APPENDABLE:
        headers["x-oss-next-append-position"] = str(obj.size)
    if obj.tags:
        headers["x-oss-tagging-count"] = str(len(obj.tags))
    headers.update({name.title(): value for name, value in obj.headers.items()})
    headers.update({f"x-oss-meta-{k}": v for k, v in obj.meta.items()})
    return headers


class FileBody:
    """Streams ``length`` bytes from ``start`` and closes the file even if never iterated."""

    def __init__(self, stream: BinaryIO, start: int, length: int) -> None:
        self._stream, self._start, self._length = stream, start, length

    def __iter__(self) -> Iterator[bytes]:
        self._stream.seek(self._start)
        remaining = self._length
        while remaining > 0:
            chunk = self._stream.read(min(OUT_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._stream.close()


# --- request helpers -------------------------------------------------------------------------
def content_md5(headers: dict[str, str]) -> bytes | None:
    value = headers.get("content-md5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise InvalidDigest()
    return digest


def body_chunks(request: Request, length: int | None) -> Iterator[bytes]:
    stream = request.stream
    received = 0
    try:
        while chunk := stream.read(1 << 20):
            received += len(chunk)
            yield chunk
    except (HTTPException, OSError):  # short of Content-Length, or a broken chunk header
        raise IncompleteBody() from None
    if length is not None and received != length:
        raise IncompleteBody()


def object_spec(headers: dict[str, str], md5: bytes | None) -> NewObject:
    """What a write's headers say of the object (PutObject, AppendObject, CopyObject with
    REPLACE, InitiateMultipartUpload, PutSymlink)."""
    check_encryption(headers)
    return NewObject(
        content_type=headers.get("content-type") or "application/octet-stream",
        meta={k[len("x-oss-meta-"):]: v for k, v in headers.items()
              if k.startswith("x-oss-meta-")},
        headers={k: headers[k] for k in STORED_HEADERS if k in headers},
        storage_class=headers.get("x-oss-storage-class"), content_md5=md5,
        forbid_overwrite=headers.get("x-oss-forbid-overwrite", "").lower() == "true",
        acl=headers.get("x-oss-object-acl", "default"),
        tags=tagging_header(headers.get("x-oss-tagging", "")),
    )


def tagging_header(value: str) -> dict[str, str]:
    """``x-oss-tagging``: URL-encoded ``key=value`` pairs joined by ``&``; a pair with more than
    one ``=`` is refused (https://www.alibabacloud.com/help/en/oss/support/0010-00000219)."""
    tags: dict[str, str] = {}
    for pair in value.split("&") if value else ():
        if pair.count("=") > 1:
            raise InvalidTag("The x-oss-tagging header must be key1=value1&key2=value2.")
        key, _, val = pair.partition("=")
        key = unquote_key(key, "tag")
        if key in tags:
            raise InvalidTag("The x-oss-tagging header names a tag key twice.")
        tags[key] = unquote_key(val, "tag")
    return tags


def check_encryption(headers: dict[str, str]) -> None:
    """Server-side encryption: AES256 is what OSS-managed keys do and nothing the local OSS
    needs to do; KMS (and SM4, which uses KMS) is out of scope locally and answered as for an
    account without KMS; any other value is ``InvalidEncryptionAlgorithmError``
    (https://www.alibabacloud.com/help/en/oss/developer-reference/putobject, request headers)."""
    value = headers.get("x-oss-server-side-encryption")
    if value is None or value == "AES256":
        return
    if value in ("KMS", "SM4"):
        raise KmsServiceNotEnabled()
    raise InvalidEncryptionAlgorithmError()


def max_keys(params: dict[str, str], name: str = "max-keys", default: int = 100) -> int:
    """A page size parameter (``max-keys``, ``max-uploads``, ``max-parts``): 1 to 1000."""
    raw = params.get(name, "") or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidArgument(f"{name} must be an integer between 1 and 1000.",
                              ArgumentName=name, ArgumentValue=raw)
    return int(raw)


def encoder(params: dict[str, str]) -> Callable[[str], str]:
    kind = params.get("encoding-type", "")
    if kind not in ("", "url"):
        raise InvalidArgument("The encoding-type must be url.",
                              ArgumentName="encoding-type", ArgumentValue=kind)
    return (lambda s: quote(s, safe="")) if kind == "url" else (lambda s: s)


# Control characters XML 1.0 forbids (all below 0x20 but tab, LF, CR). OSS keys may hold them,
# and OSS accepts them raw in request documents: oss2's own integration tests batch-delete
# '中文!@#$%^&*()-=文件\x0C-2.txt' (aliyun-oss-python-sdk tests/test_chinese.py), and oss2
# 2.19.1 writes keys into the Delete XML unescaped. They are parked in the supplementary private
# use area while the document is parsed, then put back.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_PARK = 0xF0000
_UNPARK = {_PARK + c: chr(c) for c in range(0x20)}


def parse_xml(data: bytes, root: str) -> ElementTree.Element:
    """A request document whose root must be ``root``; ``MalformedXML`` otherwise."""
    parked = _CONTROL.search(data) is not None
    if parked:
        data = _CONTROL.sub(lambda m: chr(_PARK + m.group()[0]).encode("utf-8"), data)
    try:
        node = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        raise MalformedXML() from None
    if node.tag != root:
        raise MalformedXML()
    if parked:
        for element in node.iter():
            if element.text:
                element.text = element.text.translate(_UNPARK)
    return node


def parse_range(header: str, size: int, standard: bool) -> tuple[int, int] | None:
    """(first, last) byte to send, or None for the whole object with 200.

    OSS ignores an invalid or out-of-range Range and answers 200 with the whole object; only
    with ``x-oss-range-behavior: standard`` does it trim the end and answer 416 when the start
    lies beyond the object. Only the first of several ranges is honoured
    (https://www.alibabacloud.com/help/en/oss/how-to-obtain-oss-resources-by-segmenting-http-range-requests,
    https://www.alibabacloud.com/help/en/oss/developer-reference/scope-download-using-oss-sdk-for-php-v2).
    """
    if not header.startswith("bytes="):
        return None
    first, dash, last = header[6:].split(",")[0].strip().partition("-")
    if not dash or not (first or last) or not all(p.isdigit() for p in (first, last) if p):
        return None
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return _unsatisfiable(standard)
        if count > size:
            return (0, size - 1) if standard else None
        return size - count, size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start > end:
        return None
    if start >= size:
        return _unsatisfiable(standard)
    if end >= size:
        return (start, size - 1) if standard or not last else None
    return start, end


def _unsatisfiable(standard: bool) -> tuple[int, int] | None:
    if standard:
        raise InvalidRange()
    return None


def conditions(headers: dict[str, str]) -> Conditions:
    """A read's ``If-…`` headers; an unparsable date is ignored (RFC 9110 §13.1.3, §13.1.4)."""
    def stamp(name: str) -> float | None:
        try:
            return parsedate_to_datetime(headers[name]).timestamp() if name in headers else None
        except (TypeError, ValueError):
            return None

    return Conditions(headers.get("if-match"), headers.get("if-none-match"),
                      stamp("if-modified-since"), stamp("if-unmodified-since"))


def continuation_token(marker: str) -> str:
    """ListObjectsV2's ``NextContinuationToken`` for a page that ended at ``marker``."""
    return base64.urlsafe_b64encode(marker.encode("utf-8")).decode("ascii")


def marker_of(token: str) -> str:
    """The marker a ``continuation-token`` stands for."""
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument("The continuation-token is not valid.",
                              ArgumentName="continuation-token", ArgumentValue=token) from None
