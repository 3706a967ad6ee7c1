"""Request authentication for the ECS endpoint: RPC signature v1.0 and ACS3-HMAC-SHA256.

Two schemes reach an ECS endpoint from Alibaba's SDKs:

* **RPC v1.0** (aliyunsdkcore, and the Tea SDK with ``signature_algorithm="v2"``): every
  parameter, the signature's own included, travels in the query string (a form body is merged
  in); ``Signature = Base64(HMAC-SHA1(secret + "&", METHOD&%2F&pct(sorted k=v)))``
  ("Request signatures" in the ECS API reference, github.com/AlibabaCloudDocs/ecs; and
  ``aliyunsdkcore/auth/composer/rpc_signature_composer.py``, aliyun-python-sdk-core 2.16.1).
  STS: a signed ``SecurityToken`` parameter.
* **ACS3-HMAC-SHA256** (``alibabacloud_tea_openapi`` >= 0.3 default, e.g.
  ``alibabacloud-ecs20140526``): the action is the ``x-acs-action`` header, business
  parameters are in the query, and ``Authorization: ACS3-HMAC-SHA256 Credential=<ak>,
  SignedHeaders=<a;b>,Signature=<hex>`` signs a canonical request (method, path, sorted
  query, the signed headers, SHA-256 of the body). STS: ``x-acs-security-token`` header.

Both carry a nonce (``SignatureNonce`` / ``x-acs-signature-nonce``) that the service refuses to
see twice (``SignatureNonceUsed``), which stops a captured request from being replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

from local.emulators.base import KeyRing
from local.emulators.ecs.errors import (
    Acs3SignatureNotMatched,
    IncompleteSignature,
    InvalidAccessKeyIdNotFound,
    InvalidSecurityTokenMismatch,
    MissingSignature,
    SignatureNonceUsed,
    SignatureNotMatched,
    UnsupportedSignatureAlgorithm,
    UnsupportedSignatureMethod,
)

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
NONCE_WINDOW = 15 * 60.0  # seconds a nonce is remembered; the service's timestamp tolerance


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what percent-encoding leaves as it is
_RESERVED = re.compile(rb"[^A-Za-z0-9_.~-]")


def _pct(value: str) -> str:
    """RFC 3986 percent-encoding of the UTF-8 bytes, as the RPC and ACS3 signatures use it
    (``urllib.parse.quote(value, safe="~")``): every byte but the unreserved characters as
    ``%XX``. Only the bytes that need it are looked at one by one — quote looks at every byte
    in Python, and a request's string to sign is kilobytes long (100 ``InstanceId.N``)."""
    if _UNRESERVED.fullmatch(value):
        return value
    return _RESERVED.sub(lambda m: b"%%%02X" % m[0][0], value.encode()).decode("ascii")


def rpc_string_to_sign(method: str, params: dict[str, str]) -> str:
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items())
                         if k != "Signature")
    # Encoded again as a whole: its bytes are unreserved but for "%", "&" and "=", so this is
    # _pct(canonical) in three replacements ("%" first, as the others bring new ones).
    again = canonical.replace("%", "%25").replace("&", "%26").replace("=", "%3D")
    return f"{method}&%2F&{again}"


def rpc_signature(secret: str, string_to_sign: str) -> str:
    digest = hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def acs3_canonical_request(method: str, path: str, query: list[tuple[str, str]],
                           headers: dict[str, str], signed_headers: list[str],
                           body: bytes) -> str:
    canonical_query = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(query))
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n"
                                for name in signed_headers)
    return "\n".join([method, quote(path or "/", safe="/~"), canonical_query, canonical_headers,
                      ";".join(signed_headers), hashlib.sha256(body).hexdigest()])


def acs3_string_to_sign(canonical_request: str) -> str:
    return f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def acs3_signature(secret: str, string_to_sign: str) -> str:
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SignedRequest:
    """What authentication needs from an HTTP request, independent of the web framework."""

    method: str
    path: str
    query: list[tuple[str, str]]  # URL query pairs only, blank values kept
    params: dict[str, str]  # query and form body merged: what the RPC scheme signs
    headers: dict[str, str]  # lower-case names
    body: bytes


class EcsAuthenticator:
    """Verifies either scheme against a ``KeyRing`` and rejects reused nonces."""

    def __init__(self, keyring: KeyRing, nonce_window: float = NONCE_WINDOW) -> None:
        self._keyring = keyring
        self._window = nonce_window
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, req: SignedRequest) -> str:
        """The access key id that signed ``req``; raises an ``EcsError`` otherwise."""
        authorization = req.headers.get("authorization", "")
        if authorization.startswith("ACS3-"):
            return self._verify_acs3(req, authorization)
        return self._verify_rpc(req)

    def _secret(self, access_key_id: str, token: str | None) -> str:
        secret = self._keyring.secret_for(access_key_id)
        if secret is None:
            raise InvalidAccessKeyIdNotFound()
        if not self._keyring.token_ok(access_key_id, token):
            raise InvalidSecurityTokenMismatch()
        return secret

    def _verify_rpc(self, req: SignedRequest) -> str:
        params = req.params
        access_key_id = params.get("AccessKeyId", "")
        if not access_key_id or "Signature" not in params:
            raise MissingSignature()
        secret = self._secret(access_key_id, params.get("SecurityToken"))
        if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
            raise UnsupportedSignatureMethod()
        sts = rpc_string_to_sign(req.method, params)
        if not hmac.compare_digest(rpc_signature(secret, sts), params["Signature"]):
            raise SignatureNotMatched(string_to_sign=sts)
        self._use_nonce(params.get("SignatureNonce", ""))
        return access_key_id

    def _verify_acs3(self, req: SignedRequest, authorization: str) -> str:
        algorithm, _, rest = authorization.partition(" ")
        if algorithm != ACS3_ALGORITHM:
            raise UnsupportedSignatureAlgorithm(algorithm=algorithm, supported=ACS3_ALGORITHM)
        fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
        access_key_id = fields.get("Credential", "")
        signature = fields.get("Signature", "")
        signed_headers = [h for h in fields.get("SignedHeaders", "").split(";") if h]
        if not access_key_id or not signature or not signed_headers:
            raise IncompleteSignature()
        secret = self._secret(access_key_id, req.headers.get("x-acs-security-token"))
        canonical = acs3_canonical_request(req.method, req.path, req.query, req.headers,
                                           signed_headers, req.body)
        sts = acs3_string_to_sign(canonical)
        if not hmac.compare_digest(acs3_signature(secret, sts), signature):
            raise Acs3SignatureNotMatched(string_to_sign=sts)
        self._use_nonce(req.headers.get("x-acs-signature-nonce", ""))
        return access_key_id

    def _use_nonce(self, nonce: str) -> None:
        # Checked after the signature, so a forged request cannot burn a legitimate nonce.
        if not nonce:
            return
        now = time.monotonic()
        with self._lock:
            while self._nonces:
                oldest, seen = next(iter(self._nonces.items()))
                if now - seen <= self._window:
                    break
                del self._nonces[oldest]
            if nonce in self._nonces:
                raise SignatureNonceUsed()
            self._nonces[nonce] = now
