"""MNS errors: code, message and HTTP status as the real service answers them.

The SDK's ``ErrorDecoder`` needs all four of Code, Message, RequestId and HostId under
``<Error xmlns="http://mns.aliyuncs.com/doc/v1/">``, else it raises ``RespDataDamaged`` instead
of ``MNSServerException`` (research/local-emulation.md §1.4).
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

XMLNS = "http://mns.aliyuncs.com/doc/v1/"


class MnsError(Exception):
    """An API-level error; the SDK raises it as ``MNSServerException(type=code)``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def render_error(error: MnsError, request_id: str, host_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Error xmlns="{XMLNS}">'
        f"<Code>{escape(error.code)}</Code>"
        f"<Message>{escape(error.message)}</Message>"
        f"<RequestId>{escape(request_id)}</RequestId>"
        f"<HostId>{escape(host_id)}</HostId>"
        "</Error>"
    ).encode()


# --- resources ---------------------------------------------------------------------------
def queue_not_exist(name: str) -> MnsError:
    return MnsError("QueueNotExist", f"The queue name you provided is not exist: {name}.", 404)


def queue_already_exist(name: str) -> MnsError:
    return MnsError(
        "QueueAlreadyExist",
        f"The queue you want to create is already exist with different attributes: {name}.", 409,
    )


def topic_not_exist(name: str) -> MnsError:
    return MnsError("TopicNotExist", f"The topic name you provided is not exist: {name}.", 404)


def topic_already_exist(name: str) -> MnsError:
    return MnsError(
        "TopicAlreadyExist",
        f"The topic you want to create is already exist with different attributes: {name}.", 409,
    )


def subscription_not_exist(name: str) -> MnsError:
    return MnsError(
        "SubscriptionNotExist", f"The subscription name you provided is not exist: {name}.", 404
    )


def subscription_already_exist(name: str) -> MnsError:
    return MnsError(
        "SubscriptionAlreadyExist",
        f"The subscription already exists with different attributes: {name}.", 409,
    )


# --- messages ----------------------------------------------------------------------------
def message_not_exist() -> MnsError:
    return MnsError("MessageNotExist", "Message not exist.", 404)


def receipt_handle_error(handle: str) -> MnsError:
    return MnsError(
        "ReceiptHandleError", f"The receipt handle you provide is not valid: {handle}.", 400
    )


# --- request validation ------------------------------------------------------------------
def invalid_argument(param: str, detail: str) -> MnsError:
    return MnsError("InvalidArgument", f"The value of {param} should be {detail}.", 400)


def malformed_xml(detail: str) -> MnsError:
    return MnsError("MalformedXML", f"The XML you provided was not well-formed: {detail}", 400)


def invalid_digest() -> MnsError:
    # "InvalidDegist" is the real service's spelling.
    return MnsError(
        "InvalidDegist", "The Content-MD5 you specified did not match what we received.", 400
    )


def unsupported(method: str, path: str) -> MnsError:
    return MnsError("InvalidRequest", f"Unsupported operation: {method} {path}.", 400)


# --- authentication ----------------------------------------------------------------------
def missing_authorization() -> MnsError:
    return MnsError("MissingAuthorizationHeader", "The Authorization header is missing.", 400)


def invalid_authorization() -> MnsError:
    return MnsError(
        "InvalidAuthorizationHeader",
        "The Authorization header must look like 'MNS AccessKeyId:Signature'.", 400,
    )


def invalid_access_key_id(access_key_id: str) -> MnsError:
    return MnsError(
        "InvalidAccessKeyId", f"The access Id you provided is not exist: {access_key_id}.", 403
    )


def signature_mismatch() -> MnsError:
    return MnsError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.", 403,
    )


def access_denied(detail: str) -> MnsError:
    return MnsError("AccessDenied", f"The request is denied: {detail}.", 403)


# --- validation helpers shared by the model ----------------------------------------------
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,255}$")


def check_name(kind: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise invalid_argument(kind, "1-256 letters, digits or hyphens, starting with a letter")


def check_range(param: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise invalid_argument(param, f"between {low} and {high}, got {value}")
