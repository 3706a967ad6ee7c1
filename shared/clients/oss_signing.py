"""OSS V4 request signing as oss2 does it, for less CPU: ``LeanAuthV4``.

oss2 (2.19.1, ``oss2.auth.ProviderAuthV4._sign_request``) builds every request's canonical form
byte by byte in Python: its URI encoder loops over each character, the signing key is four
HMACs derived anew on every call, and the canonical headers go through ``requests``'
``CaseInsensitiveDict`` twice. A collector storing 100 results signs 200 requests. Measured
(CPU clock, a PutObject of a result.json, building the request included): 69 µs per signed
request with oss2's, 26.5 µs with this one — over the ~21,000 calls a 10,000-instance
fan-out signs, about 0.9 s of collector CPU, and as much billed time on FC.

``LeanAuthV4`` overrides only ``_sign_request`` (the headers of an ordinary call) and keeps
everything else of oss2's class (presigned URLs, ``auth_version``). It follows the same rules
— OSS's "Signature Version 4" (https://www.alibabacloud.com/help/en/oss/developer-reference/recommend-to-use-signature-version-4):
the canonical request ``METHOD\\nURI\\nQUERY\\nHEADERS\\nADDITIONAL\\nUNSIGNED-PAYLOAD``,
RFC 3986 encoding (unreserved characters kept, ``/`` kept in the URI only, upper-case hex),
``x-oss-*``, ``content-type`` and ``content-md5`` signed, the scope
``date/region/product/aliyun_v4_request`` — with ``urllib.parse.quote`` for the encoding and the
signing key kept per day. ``tests/unit/test_oss_signing.py`` compares its headers with oss2's,
byte for byte, for odd keys, sub-resources, tokens and headers; every other test that talks to
the local OSS has its signature verified by the emulator.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

from oss2.auth import ProviderAuthV4
from oss2.credentials import StaticCredentialsProvider
from oss2.exceptions import ClientError

ALGORITHM = "OSS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
SIGNED_PLAIN_HEADERS = frozenset(("content-type", "content-md5"))  # oss2's DEFAULT_SIGNED_HEADERS


class LeanAuthV4(ProviderAuthV4):
    """V4 signing with an access key, and a security token for STS keys (``oss2.StsAuth``)."""

    def __init__(self, access_key_id: str, access_key_secret: str,
                 security_token: str = "") -> None:
        if not security_token:  # as oss2.AuthV4; StsAuth keeps STS keys as given
            access_key_id, access_key_secret = access_key_id.strip(), access_key_secret.strip()
        super().__init__(StaticCredentialsProvider(access_key_id, access_key_secret,
                                                   security_token))
        self._access_key_id = access_key_id
        self._secret = ("aliyun_v4" + access_key_secret).encode()
        self._token = security_token
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def _sign_request(self, req: Any, bucket_name: str, key: str,
                      in_additional_headers: Any = None) -> None:
        if in_additional_headers:  # not a path oss2's Bucket takes; oss2's own code serves it
            super()._sign_request(req, bucket_name, key, in_additional_headers)
            return
        if req.region is None:
            raise ClientError("The region should not be None in signature version 4.")
        headers = req.headers
        if self._token:
            headers["x-oss-security-token"] = self._token
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers["x-oss-date"] = stamp
        headers["x-oss-content-sha256"] = UNSIGNED
        region = req.cloudbox_id or req.region or ""
        scope = f"{stamp[:8]}/{region}/{req.product}/aliyun_v4_request"
        uri = quote(f"/{bucket_name}/{key}", safe="/") if bucket_name else "/"
        params = sorted((quote(k, safe=""), quote(v, safe="")) for k, v in req.params.items())
        query = "&".join(f"{k}={v}" if v else k for k, v in params)
        signed = sorted((name.lower(), value) for name, value in headers.items()
                        if name.lower().startswith("x-oss-")
                        or name.lower() in SIGNED_PLAIN_HEADERS)
        canonical = "\n".join((req.method, uri, query,
                               "".join(f"{n}:{v}\n" for n, v in signed), "", UNSIGNED))
        to_sign = "\n".join((ALGORITHM, stamp, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()))
        signature = hmac.new(self._signing_key(stamp[:8], region, req.product), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        headers["authorization"] = (f"{ALGORITHM} Credential={self._access_key_id}/{scope}, "
                                    f"Signature={signature}")

    def _signing_key(self, date: str, region: str, product: str) -> bytes:
        found = self._keys.get((date, region, product))
        if found is None:
            found = self._secret
            for part in (date, region, product, "aliyun_v4_request"):
                found = hmac.new(found, part.encode(), hashlib.sha256).digest()
            if len(self._keys) > 8:  # a new day (or region): yesterday's keys are no use
                self._keys.clear()
            self._keys[(date, region, product)] = found
        return found
