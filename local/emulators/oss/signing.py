"""Request signature checks for OSS V1 (``OSS ak:sig``) and V4 (``OSS4-HMAC-SHA256``).

Both rebuild the string oss2 2.19.1 signs (``oss2.auth.ProviderAuth`` for V1,
``oss2.auth.ProviderAuthV4`` for V4) from what arrived on the wire and compare HMACs; the
schemes are documented at https://www.alibabacloud.com/help/en/oss/developer-reference/include-signatures-in-the-authorization-header
(V1) and https://www.alibabacloud.com/help/en/oss/developer-reference/recommend-to-use-signature-version-4
(V4). Headers and presigned URLs (``sign_url``) are both accepted. Clock skew is not checked
(the emulator's clock can be moved forward, and a skew check would then fail every request);
presigned URLs do expire against the emulator clock.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

from .errors import AccessDenied, InvalidAccessKeyId, InvalidArgument, SignatureDoesNotMatch

# Query parameters that take part in the V1 resource string (oss2 2.19.1
# ``oss2.auth.ProviderAuth._subresource_key_set``).
SUBRESOURCES = frozenset((
    "response-content-type", "response-content-language", "response-cache-control", "logging",
    "response-content-encoding", "acl", "uploadId", "uploads", "partNumber", "group", "link",
    "delete", "website", "location", "objectInfo", "objectMeta", "response-expires",
    "response-content-disposition", "cors", "lifecycle", "restore", "qos", "referer", "stat",
    "bucketInfo", "append", "position", "security-token", "live", "comp", "status", "vod",
    "startTime", "endTime", "x-oss-process", "symlink", "callback", "callback-var", "tagging",
    "encryption", "versions", "versioning", "versionId", "policy", "requestPayment",
    "x-oss-traffic-limit", "qosInfo", "asyncFetch", "x-oss-request-payer", "sequential",
    "inventory", "inventoryId", "continuation-token", "worm", "wormId", "wormExtend",
    "replication", "replicationLocation", "replicationProgress", "transferAcceleration", "cname",
    "metaQuery", "x-oss-ac-source-ip", "x-oss-ac-subnet-mask", "x-oss-ac-vpc-id",
    "x-oss-ac-forward-allow", "resourceGroup", "style", "styleName", "x-oss-async-process",
    "regionList", "x-oss-write-get-object-response", "bucketArchiveDirectRead", "httpsConfig",
    "redundancyTransition", "x-oss-target-redundancy-type", "x-oss-redundancy-transition-taskid",
    "accessPoint", "accessPointPolicy", "publicAccessBlock", "x-oss-access-point-name",
    "requesterQosInfo", "qosRequester", "resourcePoolInfo", "resourcePool",
    "resourcePoolBuckets",
))
V4_ALGORITHM = "OSS4-HMAC-SHA256"


@dataclass
class RequestParts:
    """The signed parts of a request: decoded bucket, key and query; lower-cased headers."""

    method: str
    bucket: str
    key: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def v4_uri_encode(text: str, keep_slash: bool) -> str:
    """V4's URI encoding: every UTF-8 byte but ``A-Z a-z 0-9 _ - ~ .`` (and ``/`` in the
    path) as ``%XX`` in upper case — ``urllib.parse.quote``'s own rule, whose always-safe set
    is exactly those characters."""
    return quote(text, safe="/" if keep_slash else "")


def _param(key: str, value: str) -> str:
    return f"{key}={value}" if value else key


def v1_string_to_sign(req: RequestParts, date: str) -> str:
    headers = req.headers
    canon = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-oss-"))
    resource = f"/{req.bucket}/{req.key}" if req.bucket else "/"
    sub = sorted((k, v) for k, v in req.params.items() if k in SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(_param(k, v) for k, v in sub)
    return "\n".join((req.method, headers.get("content-md5", ""), headers.get("content-type", ""),
                      date, canon + resource))


def v4_canonical_request(req: RequestParts, additional: list[str]) -> str:
    uri = v4_uri_encode(f"/{req.bucket}/{req.key}" if req.bucket else "/", True)
    query = "&".join(_param(k, v) for k, v in sorted(
        (v4_uri_encode(k, False), v4_uri_encode(v, False))
        for k, v in req.params.items() if k != "x-oss-signature"))
    extra = set(additional)
    headers = "".join(
        f"{k}:{v}\n" for k, v in sorted(req.headers.items())
        if k.startswith("x-oss-") or k in ("content-type", "content-md5") or k in extra)
    payload = req.headers.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
    return "\n".join((req.method, uri, query, headers, ";".join(sorted(extra)), payload))


def v4_signature(secret: str, date_time: str, scope: str, canonical: str) -> tuple[str, str]:
    """(hex signature, string to sign) for a V4 canonical request."""
    string_to_sign = "\n".join((V4_ALGORITHM, date_time, scope,
                                hashlib.sha256(canonical.encode("utf-8")).hexdigest()))
    key = _v4_signing_key(secret, scope)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest(), string_to_sign


@functools.lru_cache(maxsize=256)
def _v4_signing_key(secret: str, scope: str) -> bytes:
    """The V4 signing key of one secret for one scope (date/region/oss/aliyun_v4_request):
    the same for every request of that day, so derived once, not four HMACs per request."""
    key = ("aliyun_v4" + secret).encode("utf-8")
    for part in scope.split("/"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


class OssAuthenticator:
    """Verifies a request against a key lookup; returns the access key id, None if anonymous."""

    def __init__(self, secret_for: Callable[[str], str | None],
                 token_ok: Callable[[str, str | None], bool], now: Callable[[], float]) -> None:
        self._secret_for = secret_for
        self._token_ok = token_ok
        self._now = now

    def authenticate(self, req: RequestParts) -> str | None:
        auth = req.headers.get("authorization", "")
        params = req.params
        if auth.startswith(V4_ALGORITHM + " "):
            return self._v4_header(req, auth[len(V4_ALGORITHM) + 1:])
        if auth.startswith("OSS "):
            ak, sep, signature = auth[4:].strip().rpartition(":")
            if not sep or not ak:
                raise InvalidArgument("Authorization header is invalid.", Authorization=auth)
            token = req.headers.get("x-oss-security-token")
            date = req.headers.get("x-oss-date") or req.headers.get("date", "")
            return self._v1(req, ak, signature, date, token)
        if auth:
            raise InvalidArgument("Authorization header is invalid.", Authorization=auth)
        if "OSSAccessKeyId" in params:
            expires = params.get("Expires", "")
            if not expires.isdigit():
                raise AccessDenied("Expires should be a positive integer.")
            if int(expires) < self._now():
                raise AccessDenied("Request has expired.", Expires=expires)
            return self._v1(req, params["OSSAccessKeyId"], params.get("Signature", ""), expires,
                            params.get("security-token"))
        if params.get("x-oss-signature-version") == V4_ALGORITHM:
            return self._v4_query(req)
        return None

    def _secret(self, ak: str, token: str | None) -> str:
        secret = self._secret_for(ak)
        if secret is None:
            raise InvalidAccessKeyId(OSSAccessKeyId=ak)
        if not self._token_ok(ak, token):
            message = ("The security token you provided is invalid." if token
                       else "The OSS Access Key Id you provided does not exist in our records.")
            raise InvalidAccessKeyId(message, OSSAccessKeyId=ak)
        return secret

    def _v1(self, req: RequestParts, ak: str, signature: str, date: str,
            token: str | None) -> str:
        secret = self._secret(ak, token)
        to_sign = v1_string_to_sign(req, date)
        expected = base64.b64encode(hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"),
                                             hashlib.sha1).digest()).decode("ascii")
        if not hmac.compare_digest(expected, signature):
            raise _mismatch(ak, to_sign, signature)
        return ak

    def _v4_header(self, req: RequestParts, rest: str) -> str:
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        date_time = req.headers.get("x-oss-date", "")
        if not date_time:
            raise AccessDenied("Missing x-oss-date header for V4 signature.")
        additional = [h for h in fields.get("AdditionalHeaders", "").lower().split(";") if h]
        return self._v4(req, fields.get("Credential", ""), fields.get("Signature", ""),
                        date_time, additional, req.headers.get("x-oss-security-token"))

    def _v4_query(self, req: RequestParts) -> str:
        params = req.params
        date_time = params.get("x-oss-date", "")
        expires = params.get("x-oss-expires", "")
        if not expires.isdigit():
            raise AccessDenied("x-oss-expires should be a positive integer.")
        try:
            signed_at = parsedate_iso8601(date_time)
        except ValueError:
            raise AccessDenied("Invalid x-oss-date.") from None
        if signed_at + int(expires) < self._now():
            raise AccessDenied("Request has expired.", Expires=expires)
        additional = [h for h in params.get("x-oss-additional-headers", "").lower().split(";")
                      if h]
        return self._v4(req, params.get("x-oss-credential", ""),
                        params.get("x-oss-signature", ""), date_time, additional,
                        params.get("x-oss-security-token"))

    def _v4(self, req: RequestParts, credential: str, signature: str, date_time: str,
            additional: list[str], token: str | None) -> str:
        ak, _, scope = credential.partition("/")
        scope_parts = scope.split("/")
        if not ak or len(scope_parts) != 4 or scope_parts[3] != "aliyun_v4_request":
            raise InvalidArgument("Invalid credential in Authorization header.",
                                  Credential=credential)
        if scope_parts[0] != date_time[:8]:
            raise InvalidArgument("Invalid signing date in Authorization header.")
        secret = self._secret(ak, token)
        canonical = v4_canonical_request(req, additional)
        expected, to_sign = v4_signature(secret, date_time, scope, canonical)
        if not hmac.compare_digest(expected, signature):
            raise _mismatch(ak, to_sign, signature, CanonicalRequest=canonical)
        return ak


def parsedate_iso8601(value: str) -> float:
    """Seconds since the epoch of a compact ``YYYYMMDDTHHMMSSZ`` timestamp."""
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()


def _mismatch(ak: str, to_sign: str, provided: str, **extra: str) -> SignatureDoesNotMatch:
    # The service returns its string to sign so a client can diff it against its own; put it
    # in the message too, which is what oss2 surfaces in exception text.
    message = f"{SignatureDoesNotMatch.template} Server string to sign: {to_sign}"
    error = SignatureDoesNotMatch(
        message, StringToSign=to_sign, OSSAccessKeyId=ak, SignatureProvided=provided,
        StringToSignBytes=" ".join(f"{b:02x}" for b in to_sign.encode("utf-8")))
    error.fields.update(extra)
    return error
