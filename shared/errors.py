"""Errors of the core, as values with codes a user can search for.

Every error a caller can cause maps to one HTTP status and one JSON shape, shared by all
triggers:

```json
{"Code": "InvalidRequest", "Message": "…", "Errors": [{"path": "$.Type", "rule": "enum",
 "value": "RunPython", "message": "…"}], "RequestId": "…"}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class AssistflowError(Exception):
    """Base of all errors raised by ``shared``."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"Code": self.code, "Message": self.message}


class ConfigError(AssistflowError):
    """The function's environment is incomplete (a deployment problem, not the caller's)."""

    code = "ConfigurationError"


@dataclass(frozen=True)
class Violation:
    """One reason a command request is invalid."""

    path: str  # JSON path of the offending value, "$" for the whole document
    rule: str  # the schema keyword (or our own rule name) that failed
    message: str  # what is wrong and what to do
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rule": self.rule, "message": self.message,
                "value": self.value}


class ViolationsError(AssistflowError):
    """A refusal with a list of per-item reasons in the ``Errors`` shape."""

    def __init__(self, message: str, violations: list[Violation]) -> None:
        super().__init__(message)
        self.violations = violations

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "Errors": [v.to_dict() for v in self.violations]}


class RequestInvalidError(ViolationsError):
    """The request does not match the command request schema; carries every violation."""

    code = "InvalidRequest"
    status = 400

    def __init__(self, violations: list[Violation]) -> None:
        count = len(violations)
        first = violations[0].message if violations else ""
        super().__init__(f"the command request has {count} problem{'s' * (count != 1)}: {first}"
                         + (" (see Errors for all)" if count > 1 else ""), violations)


class NotAllowedError(ViolationsError):
    """The request touches instances or command types this deployment's allow-list excludes."""

    code = "NotAllowed"
    status = 403


class IneligibleInstancesError(ViolationsError):
    """Pre-flight found instances that cannot run the command, and the request said Refuse."""

    code = "IneligibleInstances"
    status = 422


class UnauthorizedError(AssistflowError):
    """The webhook delivery is not signed with the shared secret (or is stale / replayed)."""

    code = "Unauthorized"
    status = 401


class PayloadTooLargeError(AssistflowError):
    code = "PayloadTooLarge"
    status = 413


class UnsupportedMediaTypeError(AssistflowError):
    code = "UnsupportedMediaType"
    status = 415


# Error codes that say "try again later" in Alibaba Cloud's APIs, whatever the HTTP status:
# throttling, the services' internal errors, a ClientToken still being processed, and
# aliyunsdkcore's own code for a network failure (aliyun-python-sdk-core 2.16.1,
# ``aliyunsdkcore/acs_exception/error_code.py``: SDK_HTTP_ERROR).
TRANSIENT_CODES = frozenset({"Throttling", "Throttling.User", "Throttling.Api", "InternalError",
                             "InternalError.Dispatch", "UnknownError", "ServiceUnavailable",
                             "IdempotentProcessing", "SDK.HttpError"})


class CloudCallError(AssistflowError):
    """A cloud API refused the work for a reason the caller can act on (bad instance id, …)."""

    code = "CloudAssistantRefused"
    status = 422

    def __init__(self, api: str, error_code: str, message: str, transient: bool = False) -> None:
        super().__init__(f"{api} failed with {error_code}: {message}")
        self.api = api
        self.error_code = error_code
        self.transient = transient
        if transient:
            self.status = 503

    @property
    def throttled(self) -> bool:
        """The service refused the rate of calls (``Throttling``, ``Throttling.User``, …)."""
        return self.error_code.startswith("Throttling")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "Api": self.api, "CloudCode": self.error_code}
