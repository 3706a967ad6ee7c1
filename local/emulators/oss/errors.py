"""OSS error codes, one class each, with the HTTP status and default message the service uses.

oss2 2.19.1 turns an error answer into an exception in ``oss2.exceptions.make_exception``: it
picks the class by the pair (HTTP status, ``Code``) and falls back to ``ServerError``
(``NotFound`` for any other 404), so both must match the service. It reads the ``<Error>``
document (``Code``, ``Message``, ``RequestId``, ``HostId`` and any further children, which it
keeps in ``details``) and gives up on a root tag other than ``Error``; on a HEAD answer, which
has no body, it reads the same document base64-encoded from the ``x-oss-err`` header. Codes and
statuses: https://www.alibabacloud.com/help/en/object-storage-service/latest/php-exception-handling
(the table of common OSS error codes); the error document:
https://www.alibabacloud.com/help/en/object-storage-service/latest/oss-error-response; messages
of the 400s: https://www.alibabacloud.com/help/en/oss/support/http-400-status-code.

Keyword arguments an error is raised with (``NoSuchBucket(BucketName=name)``) become further
children of ``<Error>``, as the service adds them.
"""

from __future__ import annotations

from ..base import ServiceError


class OssError(ServiceError, root=True):
    """The root of the OSS errors; a code without its own class (a fault) answers 400.

    ``headers`` are response headers the service sends with this error (AppendObject's
    ``PositionNotEqualToLength`` carries ``x-oss-next-append-position``).
    """

    status = 400

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None,
                 **fields: str) -> None:
        super().__init__(message, code=code, status=status, **fields)
        self.headers = headers or {}


class AccessDenied(OssError):
    code, status = "AccessDenied", 403
    template = "You have no right to access this object because of bucket acl."


class RamImplicitDeny(AccessDenied):
    """No statement of the caller's RAM policies allows the call: OSS's ``AccessDenied`` with
    EC 0003-00000001, "a RAM user ... lacks the required permissions and the bucket's ACL is
    not public" (https://www.alibabacloud.com/help/en/oss/support/0003-00000001)."""

    def __init__(self) -> None:
        super().__init__(EC="0003-00000001")


class RamExplicitDeny(AccessDenied):
    """A Deny statement of the caller's RAM policies matches the call: EC 0003-00000201, as
    https://www.alibabacloud.com/help/en/oss/support/0003-00000201 shows the answer."""

    template = "Access denied by bucket policy."

    def __init__(self) -> None:
        super().__init__(EC="0003-00000201")


class InvalidAccessKeyId(OssError):
    code, status = "InvalidAccessKeyId", 403
    template = "The OSS Access Key Id you provided does not exist in our records."


class SignatureDoesNotMatch(OssError):
    code, status = "SignatureDoesNotMatch", 403
    template = ("The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.")


class InvalidArgument(OssError):
    code, status = "InvalidArgument", 400
    template = "Invalid argument."


class InvalidRequest(OssError):
    code, status = "InvalidRequest", 400
    template = "Invalid request."


class MalformedXML(OssError):
    code, status = "MalformedXML", 400
    template = ("The XML you provided was not well-formed or did not validate against our "
                "published schema.")


class InvalidBucketName(OssError):
    code, status = "InvalidBucketName", 400
    template = "The specified bucket is not valid."


class InvalidObjectName(OssError):
    code, status = "InvalidObjectName", 400
    template = "The specified object is not valid."


class InvalidDigest(OssError):
    code, status = "InvalidDigest", 400
    template = "The Content-MD5 you specified was invalid."


class IncompleteBody(OssError):
    code, status = "IncompleteBody", 400
    template = "You did not provide the number of bytes specified by the Content-Length HTTP header."


class EntityTooLarge(OssError):
    code, status = "EntityTooLarge", 400
    template = "Your proposed upload exceeds the maximum allowed size."


class MissingContentLength(OssError):
    code, status = "MissingContentLength", 411
    template = "You must provide the Content-Length HTTP header."


class NoSuchBucket(OssError):
    code, status = "NoSuchBucket", 404
    template = "The specified bucket does not exist."


class NoSuchKey(OssError):
    code, status = "NoSuchKey", 404
    template = "The specified key does not exist."


class BucketNotEmpty(OssError):
    code, status = "BucketNotEmpty", 409
    template = "The bucket you tried to delete is not empty."


class BucketAlreadyExists(OssError):
    code, status = "BucketAlreadyExists", 409
    template = ("The requested bucket name is not available. The bucket namespace is shared by all "
                "users of the system. Please select a different name and try again.")


class FileAlreadyExists(OssError):
    code, status = "FileAlreadyExists", 409
    template = "The object you specified already exists and can not be overwritten."


class InvalidRange(OssError):
    code, status = "InvalidRange", 416
    template = "The requested range cannot be satisfied"


class PreconditionFailed(OssError):
    code, status = "PreconditionFailed", 412
    template = "At least one of the pre-conditions you specified did not hold."


class NotModified(OssError):
    """Rendered as a bare 304 (no body): the answer to a GET whose condition says "unchanged"."""

    code, status = "NotModified", 304
    template = "Not Modified"


class MethodNotAllowed(OssError):
    code, status = "MethodNotAllowed", 405
    template = "The specified method is not allowed against this resource."


class NotImplementedHere(OssError):
    """``NotImplemented`` (named apart from Python's builtin): an OSS feature the emulator lacks."""

    code, status = "NotImplemented", 501
    template = "A header or query you provided requests a feature the emulator does not implement."


class InvalidTag(OssError):
    """A tag set or ``x-oss-tagging`` value OSS refuses
    (https://www.alibabacloud.com/help/en/oss/user-guide/0010-00000217)."""

    code, status = "InvalidTag", 400
    template = "The tag provided was not a valid tag."


class NoSuchUpload(OssError):
    code, status = "NoSuchUpload", 404
    template = ("The specified upload does not exist. The upload ID may be invalid, or the "
                "upload may have been aborted or completed.")


class InvalidPart(OssError):
    code, status = "InvalidPart", 400
    template = ("One or more of the specified parts could not be found or the specified entity "
                "tag might not have matched the part's entity tag.")


class InvalidPartOrder(OssError):
    code, status = "InvalidPartOrder", 400
    template = "The list of parts was not in ascending order. Parts must be ordered by part number."


class EntityTooSmall(OssError):
    code, status = "EntityTooSmall", 400
    template = "Your proposed upload is smaller than the minimum allowed size."


class PositionNotEqualToLength(OssError):
    code, status = "PositionNotEqualToLength", 409
    template = "Position is not equal to file length"


class ObjectNotAppendable(OssError):
    code, status = "ObjectNotAppendable", 409
    template = "The object is not appendable"


class OperationNotSupported(OssError):
    code, status = "OperationNotSupported", 400
    template = "The operation is not supported for this resource"


class NotSymlink(OssError):
    code, status = "NotSymlink", 400
    template = "The specified object is not a symlink."


class InvalidEncryptionAlgorithmError(OssError):
    code, status = "InvalidEncryptionAlgorithmError", 400
    template = "The Encryption request you specified is not valid. Supported value: AES256/KMS/SM4"


class KmsServiceNotEnabled(OssError):
    """Server-side encryption with KMS on an account without KMS, which the local cloud is."""

    code, status = "KmsServiceNotEnabled", 403
    template = "The OSS service is not authorized to access KMS. Please activate KMS first."


class InternalError(OssError):
    code, status = "InternalError", 500
    template = "We encountered an internal error. Please try again."
