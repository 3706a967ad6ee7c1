"""ECS RPC API errors: code, HTTP status and message, as the real service answers them.

Codes and statuses follow ../shared/research/cloud-assistant-api.md §6. The wire layer renders
them as ``{"RequestId", "HostId", "Code", "Message"}``; aliyunsdkcore raises them as
``ServerException(code, message, http_status, request_id)``.
"""

from __future__ import annotations


class EcsApiError(Exception):
    """An API-level error (aliyunsdkcore raises it as ``ServerException``)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def missing(param: str) -> EcsApiError:
    return EcsApiError("MissingParameter", f"The input parameter \"{param}\" that is mandatory "
                       "for processing this request is not supplied.", 400)


def invalid(param: str, detail: str) -> EcsApiError:
    return EcsApiError(f"InvalidParameter.{param}" if "." not in param else param,
                       f"The specified parameter \"{param}\" is not valid: {detail}", 400)


def not_found(code: str, what: str) -> EcsApiError:
    return EcsApiError(code, f"The specified {what} does not exist.", 404)


def forbidden(code: str, message: str) -> EcsApiError:
    return EcsApiError(code, message, 403)


def bad_frequency(detail: str) -> EcsApiError:
    return EcsApiError("InvalidParam.Frequency", f"The specified Frequency is not valid: {detail}",
                       400)


def throttled() -> EcsApiError:
    # Generic ECS wording and status (research §6, G-NET); aliyunsdkcore retries exactly this
    # code on its retryable (Describe*) APIs.
    return EcsApiError("Throttling", "Request was denied due to request throttling.", 400)
