"""aliyunsdkcore's RPC signature (HMAC-SHA1, signature version 1.0), without its per-byte cost.

aliyunsdkcore 2.16.1 signs every RPC call in ``auth/composer/rpc_signature_composer.py``
(``get_signed_url``): it percent-encodes the sorted parameters with ``urlencode`` (which
looks at every byte of every name and value in Python), encodes the whole query again with
``pathname2url``, and encodes the parameters a third time for the URL. A call that names 100
instances (InvokeCommand, DescribeInstances, DescribeCloudAssistantStatus) with an STS token
cost 1.2 ms of CPU there; a 10,000-instance request makes 400 of them, most before its webhook
can answer.

``install()`` replaces that one function with ``get_signed_url`` below, which returns the
very same URL and string to sign (``tests/unit/test_rpc_signing.py`` checks them against the
SDK's own on awkward names and values): a name or value made of unreserved characters alone
is taken as it is, any other is encoded only where a byte needs it, and the sorted query —
unreserved bytes, ``%``, ``&`` and ``=`` — is encoded again by three replacements. The SDK's
own steps before and after are kept: its parameters (``Timestamp``, ``SignatureNonce`` …, by
its own function) and its signer.
"""

from __future__ import annotations

import re
from typing import Any

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what RFC 3986 percent-encoding leaves alone
_RESERVED = re.compile(rb"[^A-Za-z0-9_.~-]")


def encode(value: Any) -> str:
    """One name or value as the SDK writes it: ``urlencode``'s ``quote_plus``, then ``+`` as
    ``%20`` and ``*`` as ``%2A`` (``__pop_standard_urlencode``) — every byte of its UTF-8 but
    the unreserved characters as ``%XX``. Not a string: ``str()`` of it, bytes as they are."""
    if isinstance(value, bytes):
        raw = value
    else:
        text = value if isinstance(value, str) else str(value)
        if _UNRESERVED.fullmatch(text):
            return text
        raw = text.encode("utf-8")
    return _RESERVED.sub(lambda m: b"%%%02X" % m[0][0], raw).decode("ascii")


def _pairs(params: Any) -> dict[Any, str]:
    """``name=value`` of each parameter, encoded."""
    return {k: f"{encode(k)}={encode(v)}" for k, v in params.items()}


def get_signed_url(params: Any, ak: str, secret: str, accept_format: str, method: str,
                   body_params: Any, signer: Any = None) -> tuple[str, str]:
    """``rpc_signature_composer.get_signed_url``: the same arguments, the same answer."""
    from aliyunsdkcore.auth.algorithm import sha_hmac1
    from aliyunsdkcore.auth.composer import rpc_signature_composer as sdk

    signer = signer or sha_hmac1
    refresh = getattr(sdk, "__refresh_sign_parameters")  # a module-level dunder name
    url_params = refresh(params, ak, accept_format, signer)
    in_url = _pairs(url_params)  # each encoded once, for the string to sign and the URL
    signed = {**in_url, **_pairs(body_params)}  # a body parameter signs over a URL one
    query = "&".join(signed[k] for k in sorted(signed))
    # pathname2url's quote of ``query``: of its bytes only "%", "&" and "=" are not unreserved
    string_to_sign = method + "&%2F&" + query.replace("%", "%25").replace(
        "&", "%26").replace("=", "%3D")
    signature = signer.get_sign_string(string_to_sign, secret + "&")
    url_params["Signature"] = signature
    in_url["Signature"] = f"Signature={encode(signature)}"
    return "/?" + "&".join(in_url[k] for k in url_params), string_to_sign


_SDK_OWN: Any = None  # the SDK's function, once replaced


def install() -> None:
    """Sign aliyunsdkcore's RPC calls with ``get_signed_url`` (idempotent). ``RpcRequest``
    reads the function from its module on every call (``aliyunsdkcore/request.py``
    ``get_url``), so this one assignment covers every request."""
    global _SDK_OWN
    from aliyunsdkcore.auth.composer import rpc_signature_composer as sdk

    if not callable(getattr(sdk, "__refresh_sign_parameters", None)):
        return  # not the SDK this was written against (2.16.1, pinned): its own signing stays
    if sdk.get_signed_url is not get_signed_url:
        _SDK_OWN = sdk.get_signed_url
        sdk.get_signed_url = get_signed_url


def sdk_own() -> Any:
    """The SDK's own ``get_signed_url``, installed over or not (what the tests compare with)."""
    from aliyunsdkcore.auth.composer import rpc_signature_composer as sdk

    return _SDK_OWN or sdk.get_signed_url
