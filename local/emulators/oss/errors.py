"""OSS error codes: each maps to the HTTP status and default message the real service uses.

The model raises ``OssError``; the wire layer renders it as ``<Error>`` XML (root tag without a
namespace, as oss2's ``make_exception`` requires) or, for HEAD, as base64 XML in ``x-oss-err``.
oss2 picks its exception class by the pair (status, Code), so both must match the service.
"""

from __future__ import annotations

# code -> (HTTP status, default message), messages as the service words them
ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "You have no right to access this object because of bucket acl."),
    "InvalidAccessKeyId": (
        403, "The OSS Access Key Id you provided does not exist in our records."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "InvalidArgument": (400, "Invalid argument."),
    "InvalidRequest": (400, "Invalid request."),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema.",
    ),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidObjectName": (400, "The specified object is not valid."),
    "InvalidDigest": (400, "The Content-MD5 you specified was invalid."),
    "IncompleteBody": (
        400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    ),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "BucketAlreadyExists": (
        409,
        "The requested bucket name is not available. The bucket namespace is shared by all "
        "users of the system. Please select a different name and try again.",
    ),
    "FileAlreadyExists": (
        409,
        "The object you specified already exists and can not be overwritten.",
    ),
    "InvalidRange": (416, "The requested range cannot be satisfied"),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold."),
    "NotModified": (304, "Not Modified"),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "NotImplemented": (501, "A header or query you provided requests a feature the emulator "
                            "does not implement."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
}


class OssError(Exception):
    """An OSS error response: ``code``, ``status``, ``message`` and extra ``<Error>`` children."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None,
                 **extra: str) -> None:
        default_status, default_message = ERRORS.get(code, (400, code))
        self.code = code
        self.status = status if status is not None else default_status
        self.message = message if message is not None else default_message
        self.extra = extra
        super().__init__(f"{self.status} {code}: {self.message}")


def describe(code: str) -> tuple[int, str, str]:
    """(HTTP status, Code, Message) of ``code``; unknown codes are a 400 worded as the code."""
    status, message = ERRORS.get(code, (400, code))
    return status, code, message
