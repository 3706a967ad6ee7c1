"""The MNS request signature and its verification.

The scheme (https://www.alibabacloud.com/help/doc-detail/27487.htm, and aliyun-mns-sdk 1.3.0
``mns/mns_client.py`` ``MNSClient.get_signature``)::

    Authorization: MNS <AccessKeyId>:base64(HMAC-SHA1(secret, string to sign))

    string to sign = VERB \\n content-md5 \\n content-type \\n date \\n
                     one "name:value\\n" per x-mns-* header, sorted by name
                     + the request URI exactly as sent, query string included

so the server takes the URI from the raw request line, never from a decoded path. The signed
``content-md5`` is base64 of the *hex* MD5 of the body (``MNSClient.build_header``), not the
RFC 1864 form; a body that does not match it is refused. An STS key pair signs the same way and
adds its token as ``security-token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from local.emulators.base import KeyRing

from .errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidAuthorizationHeader,
    InvalidDegist,
    MissingAuthorizationHeader,
    SignatureDoesNotMatch,
)
from .wire import MnsRequest

log = logging.getLogger(__name__)


def string_to_sign(method: str, headers: dict[str, str], raw_uri: str) -> str:
    mns = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-mns-"))
    fixed = [headers.get(k, "") for k in ("content-md5", "content-type", "date")]
    return "\n".join([method, *fixed]) + "\n" + mns + raw_uri


def sign(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()


def verify(keyring: KeyRing, request: MnsRequest) -> str:
    """The AccessKeyId that signed ``request``; raises the error MNS answers if none did."""
    headers = request.headers
    authorization = headers.get("authorization")
    if not authorization:
        raise MissingAuthorizationHeader()
    scheme, _, credential = authorization.strip().partition(" ")
    access_key_id, sep, signature = credential.strip().partition(":")
    if scheme != "MNS" or not sep or not access_key_id:
        raise InvalidAuthorizationHeader()
    secret = keyring.secret_for(access_key_id)
    if secret is None:
        raise InvalidAccessKeyId(access_key_id=access_key_id)
    text = string_to_sign(request.method, headers, request.raw_uri)
    if not hmac.compare_digest(sign(secret, text), signature.strip()):
        log.debug("mns: signature mismatch, server string to sign %r", text)
        raise SignatureDoesNotMatch()
    if not keyring.token_ok(access_key_id, headers.get("security-token")):
        raise AccessDenied(detail=(
            "the security token is missing or does not match this STS access key"
            if keyring.keys[access_key_id][1] else
            "a security token was sent with a long-term access key"
        ))
    digest = headers.get("content-md5")
    if request.body and digest and digest.strip() != content_md5(request.body):
        raise InvalidDegist()
    return access_key_id
