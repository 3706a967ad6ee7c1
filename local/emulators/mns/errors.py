"""MNS errors: one class per error code, with the HTTP status and the message the emulator answers.

Codes and statuses follow the MNS error code table
(https://www.alibabacloud.com/help/en/message-service/latest/syntax-of-error-responses); the
messages name what was wrong. ``MnsApp.render_error`` puts them in the ``<Error>`` document the
SDK decodes (``wire.error_document``).
"""

from __future__ import annotations

from local.emulators.base import ServiceError


class MnsError(ServiceError, root=True):
    """An MNS API error; aliyun-mns-sdk raises it as ``MNSServerException(type=code)``."""


# --- resources ---------------------------------------------------------------------------
class QueueNotExist(MnsError):
    code, status = "QueueNotExist", 404
    template = "The queue name you provided is not exist: {name}."


class QueueAlreadyExist(MnsError):
    code, status = "QueueAlreadyExist", 409
    template = "The queue you want to create is already exist with different attributes: {name}."


class TopicNotExist(MnsError):
    code, status = "TopicNotExist", 404
    template = "The topic name you provided is not exist: {name}."


class TopicAlreadyExist(MnsError):
    code, status = "TopicAlreadyExist", 409
    template = "The topic you want to create is already exist with different attributes: {name}."


class SubscriptionNotExist(MnsError):
    code, status = "SubscriptionNotExist", 404
    template = "The subscription name you provided is not exist: {name}."


class SubscriptionAlreadyExist(MnsError):
    code, status = "SubscriptionAlreadyExist", 409
    template = "The subscription already exists with different attributes: {name}."


# --- messages ----------------------------------------------------------------------------
class MessageNotExist(MnsError):
    code, status = "MessageNotExist", 404
    template = "Message not exist."


class ReceiptHandleError(MnsError):
    code, status = "ReceiptHandleError", 400
    template = "The receipt handle you provide is not valid: {handle}."


# --- the request -------------------------------------------------------------------------
class InvalidArgument(MnsError):
    code, status = "InvalidArgument", 400
    template = "The value of {param} should be {detail}."


class MalformedXML(MnsError):
    code, status = "MalformedXML", 400
    template = "The XML you provided was not well-formed: {detail}"


class InvalidDegist(MnsError):
    """A body that does not match its ``content-md5`` ("Degist" is the service's spelling)."""

    code, status = "InvalidDegist", 400
    template = "The Content-MD5 you specified did not match what we received."


class InvalidRequest(MnsError):
    code, status = "InvalidRequest", 400
    template = "Unsupported operation: {method} {path}."


# --- authentication ----------------------------------------------------------------------
class MissingAuthorizationHeader(MnsError):
    code, status = "MissingAuthorizationHeader", 400
    template = "The Authorization header is missing."


class InvalidAuthorizationHeader(MnsError):
    code, status = "InvalidAuthorizationHeader", 400
    template = "The Authorization header must look like 'MNS AccessKeyId:Signature'."


class InvalidAccessKeyId(MnsError):
    code, status = "InvalidAccessKeyId", 403
    template = "The access Id you provided is not exist: {access_key_id}."


class SignatureDoesNotMatch(MnsError):
    code, status = "SignatureDoesNotMatch", 403
    template = "The request signature we calculated does not match the signature you provided."


class AccessDenied(MnsError):
    code, status = "AccessDenied", 403
    template = "The request is denied: {detail}."


class RamAccessDenied(AccessDenied):
    """The caller's RAM policies do not allow the call: MNS answers 403 ``AccessDenied`` with
    this message, also when a RAM user's policy does not cover the queue
    (https://www.alibabacloud.com/help/en/mns/support/faq-403-accessdenied)."""

    template = "The OwnerId that your Access Key Id associated to is forbidden for this operation."


# --- the service -------------------------------------------------------------------------
class InternalError(MnsError):
    """Never raised by the emulator itself: the code fault injection answers most often."""

    code, status = "InternalError", 500
    template = "Internal error."
