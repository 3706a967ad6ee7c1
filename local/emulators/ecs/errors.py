"""ECS RPC API errors: one class per error code the emulator answers, with its HTTP status.

``app.py`` renders each as ``{"RequestId", "HostId", "Code", "Message"}`` with the class's
status; aliyunsdkcore raises that as ``ServerException(code, message, http_status,
request_id)`` (``aliyunsdkcore/acs_exception/exceptions.py``, aliyun-python-sdk-core 2.16.1).

Codes and statuses are those of the error tables of the ECS 2014-05-26 API reference, one
page per action: https://help.aliyun.com/zh/ecs/developer-reference/api-ecs-2014-05-26-<action>
(``invokecommand``, ``runcommand``, ``createcommand``, ``stopinvocation``,
``describeinvocationresults``). Messages are the emulator's own wording, except where a
client parses them (``SignatureDoesNotMatch``, ``Throttling``).

A code shared by several messages has one class and a subclass per other wording (the
subclass inherits the code, so ``EcsError.from_code`` still finds the main class).
"""

from __future__ import annotations

from local.emulators.base import ServiceError


class EcsError(ServiceError, root=True):
    """An ECS API error; aliyunsdkcore raises it as ``ServerException``."""


# --- request and signature -------------------------------------------------------------------
class InvalidActionNotFound(EcsError):
    code, status = "InvalidAction.NotFound", 404
    template = 'Specified api "{action}" is not found, please check your url and method.'


class MissingParameter(EcsError):
    code, status = "MissingParameter", 400
    template = ('The input parameter "{name}" that is mandatory for processing this request is '
                "not supplied.")


class MissingSignature(MissingParameter):
    template = "AccessKeyId and Signature are required."


class InvalidParameter(EcsError):
    """``InvalidParameter.<Name>``: the code names the parameter whose value is malformed."""

    code, status = "InvalidParameter", 400
    template = 'The specified parameter "{param}" is not valid: {detail}'

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 status: int | None = None, **fields: str) -> None:
        if code is None and "param" in fields:
            code = f"InvalidParameter.{fields['param']}"
        super().__init__(message, code=code, status=status, **fields)


class UnsupportedSignatureMethod(EcsError):
    code, status = "InvalidParameter.SignatureMethod", 400
    template = "Only HMAC-SHA1 is supported for signature version 1.0."


class UnsupportedSignatureAlgorithm(UnsupportedSignatureMethod):
    template = "Signature algorithm {algorithm} is not supported here; use {supported}."


class InvalidAccessKeyIdNotFound(EcsError):
    code, status = "InvalidAccessKeyId.NotFound", 404
    template = "Specified access key is not found."


class InvalidSecurityTokenMismatch(EcsError):
    code, status = "InvalidSecurityToken.Mismatch", 400
    template = "Specified SecurityToken does not match the access key."


class ForbiddenRam(EcsError):
    """The caller's RAM policies do not allow the call (403 ``Forbidden.RAM``, in the error
    table of ECS's API reference pages, e.g.
    https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-modifyautoprovisioninggroup,
    and ECS's error center https://api.alibabacloud.com/document/Ecs/2014-05-26/errorCode)."""

    code, status = "Forbidden.RAM", 403
    template = ("User not authorized to operate on the specified resource, or this API "
                "doesn't support RAM.")


class IncompleteSignature(EcsError):
    code, status = "IncompleteSignature", 400
    template = ("The Authorization header must carry Credential, SignedHeaders and Signature.")


class SignatureNotMatched(EcsError):
    """``SignatureDoesNotMatch`` for an RPC v1.0 signature.

    aliyunsdkcore takes ``Message.split(':')[1]`` as the server's string to sign and compares
    it with its own (``AcsClient._get_server_exception``, aliyun-python-sdk-core 2.16.1): the
    message must end with ``string to sign is:<sts>``.
    """

    code, status = "SignatureDoesNotMatch", 400
    template = ("Specified signature is not matched with our calculation. "
                "server string to sign is:{string_to_sign}")


class Acs3SignatureNotMatched(SignatureNotMatched):
    template = ("The request signature does not conform to Aliyun standards. "
                "server string to sign is:{string_to_sign}")


class SignatureNonceUsed(EcsError):
    code, status = "SignatureNonceUsed", 400
    template = "Specified signature nonce was used already."


class Throttling(EcsError):
    """ECS's generic throttling answer (HTTP 400). aliyunsdkcore retries exactly this code on
    its retryable (Describe*) APIs (``aliyunsdkcore/data/retry_config.json``, 2.16.1)."""

    code, status = "Throttling", 400
    template = "Request was denied due to request throttling."


class InvalidClientTokenMalformed(EcsError):
    code, status = "InvalidClientToken.Malformed", 400
    template = "The ClientToken must be at most 64 ASCII characters."


class IdempotentParameterMismatch(EcsError):
    code, status = "IdempotentParameterMismatch", 403
    template = "The ClientToken was used before with other parameters."


class InvalidParamPageNumber(EcsError):
    code, status = "InvalidParam.PageNumber", 403
    template = "PageNumber must be at least 1."


class InvalidParamPageSize(EcsError):
    code, status = "InvalidParam.PageSize", 403
    template = "PageSize must be 1 to {limit}."


class InstanceIdsExceedLimit(EcsError):
    code, status = "InstanceIds.ExceedLimit", 403
    template = "At most {limit} {what}."


# --- unknown resources and values --------------------------------------------------------------
class InvalidCmdIdNotFound(EcsError):
    code, status = "InvalidCmdId.NotFound", 404
    template = 'The specified command "{command_id}" does not exist.'


class InvalidInvokeIdNotFound(EcsError):
    code, status = "InvalidInvokeId.NotFound", 404
    template = 'The specified invocation "{invoke_id}" does not exist.'


class InvalidInstanceNotFound(EcsError):
    """An unknown instance given to RunCommand / InvokeCommand / DescribeCloudAssistantStatus."""

    code, status = "InvalidInstance.NotFound", 404
    template = 'The specified instance "{instance_id}" does not exist.'


class InvalidInstanceIdNotFound(EcsError):
    """StopInvocation's name for an instance the invocation does not target."""

    code, status = "InvalidInstanceId.NotFound", 404
    template = 'The specified instance "{instance_id}" in invocation {invoke_id} does not exist.'


class InvalidRepeatModeNotFound(EcsError):
    code, status = "InvalidRepeatMode.NotFound", 404
    template = 'The specified repeat mode "{mode}" does not exist.'


class InvalidTerminationModeNotFound(EcsError):
    code, status = "InvalidTerminationMode.NotFound", 404
    template = 'The specified termination mode "{mode}" does not exist.'


# --- commands ----------------------------------------------------------------------------------
class InvalidCmdTypeNotFound(EcsError):
    code, status = "InvalidCmdType.NotFound", 403
    template = 'The specified command type "{type}" is not supported; use one of {types}.'


class CmdCountExceedQuota(EcsError):
    code, status = "CmdCount.ExceedQuota", 403
    template = "The region already retains {quota} commands; delete some first."


class CmdContentExceedLimit(EcsError):
    code, status = "CmdContent.ExceedLimit", 403
    template = "The Base64-encoded command content exceeds 24 KB."


class ContentWithParametersExceedLimit(CmdContentExceedLimit):
    template = "The command content with its Parameters exceeds 24 KB in Base64."


class CmdNameExceedLimit(EcsError):
    code, status = "CmdName.ExceedLimit", 403
    template = "The command name exceeds 128 characters."


class CmdDescExceedLimit(EcsError):
    code, status = "CmdDesc.ExceedLimit", 403
    template = "The command description exceeds 512 characters."


class InvalidLauncherLengthLimitExceeded(EcsError):
    code, status = "InvalidLauncher.LengthLimitExceeded", 403
    template = "The Launcher exceeds 1 KB."


class UsernameExceedLimit(EcsError):
    code, status = "Username.ExceedLimit", 403
    template = "The Username exceeds 255 characters."


# --- {{parameters}} ----------------------------------------------------------------------------
class CmdParamEmptyKey(EcsError):
    code, status = "CmdParam.EmptyKey", 403
    template = "A {{{{}}}} parameter in the content has no name."  # formats to "A {{}} …"


class CmdParamInvalidParamName(EcsError):
    code, status = "CmdParam.InvalidParamName", 403
    template = "Parameter name {name!r} may contain only letters, digits, - and _."


class ReservedParamName(CmdParamInvalidParamName):
    template = "{name} is not a built-in parameter; the acs:: prefix is reserved for built-ins."


class CmdParamNameExceedLimit(EcsError):
    code, status = "CmdParamName.ExceedLimit", 403
    template = "Parameter name {name}… exceeds {limit} bytes."


class ParameterCountExceedLimit(EcsError):
    code, status = "ParameterCount.ExceedLimit", 403
    template = "At most {limit} Parameters may be passed."


class DefinedParameterCountExceedLimit(ParameterCountExceedLimit):
    template = "A command may define at most {limit} parameters."


class ParameterKeyExceedLimit(EcsError):
    code, status = "ParameterKey.ExceedLimit", 403
    template = "Parameter keys must be 1 to {limit} characters."


class ParameterNotMatched(EcsError):
    code, status = "Parameter.NotMatched", 403
    template = "Parameter {key!r} is not defined in the command content."


class ParameterDisabled(EcsError):
    code, status = "Parameter.Disabled", 400
    template = "Parameters were given but the command has EnableParameter=false."


# --- invocations -------------------------------------------------------------------------------
class MissingParamInstanceId(EcsError):
    code, status = "MissingParam.InstanceId", 400
    template = "The parameter InstanceId is required."


class MissingParamFrequency(EcsError):
    code, status = "MissingParam.Frequency", 400
    template = "RepeatMode=Period needs a Frequency."


class InvalidParamFrequency(EcsError):
    code, status = "InvalidParam.Frequency", 400
    template = "The specified Frequency is not valid: {detail}"


class InvalidInstanceNotMatch(EcsError):
    """An instance cannot take the command: RunCommand, InvokeCommand and DryRun refuse."""

    code, status = "InvalidInstance.NotMatch", 400
    template = "Instance {instance_id} cannot run the command: {error_code} ({error_info})."


class DryRunOperation(EcsError):
    """RepeatMode=DryRun passed every check: ECS's DryRun answer is this error (HTTP 400)."""

    code, status = "DryRunOperation", 400
    template = "Request validation has been passed with DryRun flag set."



# --- tags (ListTagResources) ---------------------------------------------------------------------
# The error table of https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-listtagresources
class MissingParameterResourceType(EcsError):
    code, status = "MissingParameter.ResourceType", 404
    template = "The parameter - ResourceType should not be null"


class MissingParameterTags(EcsError):
    """Neither ResourceId.N nor Tag.N nor TagFilter.N: nothing to query."""

    code, status = "MissingParameter.Tags", 404
    template = "The parameter - Tags should not be null"


class InvalidResourceTypeNotFound(EcsError):
    code, status = "InvalidResourceType.NotFound", 404
    template = "The ResourceType provided does not exist in our records."


class NumberExceedResourceIds(EcsError):
    code, status = "NumberExceed.ResourceIds", 400
    template = "The ResourceIds parameter's number is exceed , Valid : {limit}"


class NumberExceedTags(EcsError):
    code, status = "NumberExceed.Tags", 400
    template = "The Tags parameter's number is exceed , Valid : {limit}"


class DuplicateTagKey(EcsError):
    code, status = "Duplicate.TagKey", 400
    template = "The Tag.N.Key contain duplicate key."


class InvalidTagKeyMalformed(EcsError):
    code, status = "InvalidTagKey.Malformed", 400
    template = "The specified Tag.n.Key is not valid: {detail}"


class InvalidTagValueMalformed(EcsError):
    code, status = "InvalidTagValue.Malformed", 400
    template = "The specified Tag.n.Value is not valid: {detail}"
