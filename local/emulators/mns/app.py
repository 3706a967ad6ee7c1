"""The MNS emulator's WSGI app: request -> MNS action, signature, rendering, control extras.

Every answer carries ``x-mns-request-id`` in exactly that lower-case spelling: aliyun-mns-sdk
1.3.0 keeps response headers in a case-sensitive dict (``mns/mns_http.py``) and reads that key
(``ResponseBase.get_requestid`` in ``mns/mns_request.py``, and ``MNSClient.check_status`` when an
error body has none).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from local.emulators.base import (
    Call,
    Clock,
    EmulatorApp,
    KeyRing,
    ServiceError,
    json_response,
)
from local.ram import Decision, RamRequest

from . import signing, wire
from .errors import MnsError, RamAccessDenied
from .model import MnsModel
from .operations import OPERATIONS, Reply
from .store import MnsStore

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "1000000000000000"  # TopicOwner / Subscriber in notifications
# RAM names the batch APIs by their single form: BatchSendMessage is mns:SendMessage, and so on.
RAM_ACTIONS = {"BatchSendMessage": "SendMessage", "BatchReceiveMessage": "ReceiveMessage",
               "BatchPeekMessage": "PeekMessage", "BatchDeleteMessage": "DeleteMessage"}


class MnsApp(EmulatorApp):
    """Local Alibaba Cloud MNS (queues and topics) for the unchanged ``mns`` SDK.

    State persists in ``state_dir/mns.sqlite3``. Control API extras (no signature needed):

    * ``GET /_emulator/queues`` — every queue with its message counts and attributes
    * ``GET /_emulator/queues/<queue>/messages`` — its messages, without consuming them
    * ``GET /_emulator/topics`` — every topic with its subscriptions
    """

    service = "mns"
    error = MnsError
    operations = OPERATIONS

    def __init__(self, keyring: KeyRing, state_dir: Path, clock: Clock | None = None, *,
                 account_id: str = DEFAULT_ACCOUNT_ID, region: str = "cn-hangzhou") -> None:
        super().__init__(keyring, clock)
        self.account_id = account_id
        self.region = region  # of the queues' RAM ARNs
        store = MnsStore(Path(state_dir) / "mns.sqlite3")
        self.model = MnsModel(store, self.clock, account_id)

    # --- the pipeline's service steps ------------------------------------------------------
    def parse(self, call: Call) -> None:
        call.action, call.params = wire.read_request(call.request)

    def authenticate(self, call: Call) -> None:
        call.access_key_id = signing.verify(self.keyring, call.params)

    def ram_request(self, call: Call) -> RamRequest:
        """``mns:<API>`` on ``acs:mns:{region}:{account}:`` + the request's path: /queues,
        /queues/{name}, /queues/{name}/messages, /topics/{name}/messages, … (the API
        authorization table, https://help.aliyun.com/zh/mns/b3asrm; the topic rows follow
        the same pattern)."""
        path = unquote(call.params.raw_uri.partition("?")[0]).strip("/")
        return RamRequest.of(f"mns:{RAM_ACTIONS.get(call.action, call.action)}",
                             [f"acs:mns:{self.region}:{self.account_id}:/{path}"])

    def ram_denied(self, call: Call, decision: Decision) -> MnsError:
        return RamAccessDenied()

    def render(self, call: Call, result: Reply) -> Response:
        response = Response(result.body.encode() if result.body else b"", status=result.status)
        if result.body:
            response.headers["Content-Type"] = wire.XML_TYPE
        response.headers["x-mns-request-id"] = call.request_id
        response.headers["x-mns-version"] = wire.API_VERSION
        for name, value in result.headers.items():
            response.headers[name] = value
        return response

    def render_error(self, call: Call, error: ServiceError) -> Response:
        log.debug("mns %s %s -> %s", call.request.method, call.request.path, error)
        host_id = wire.base_url(call.request)
        body = wire.error_document(error, call.request_id, host_id)
        return self.render(call, Reply(error.status, body))

    # --- control API -----------------------------------------------------------------------
    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        parts = name.split("/")
        if request.method == "GET" and parts == ["queues"]:
            return json_response({"queues": self.model.queue_overview()})
        if request.method == "GET" and len(parts) == 3 and parts[::2] == ["queues", "messages"]:
            try:
                messages = self.model.queue_messages(parts[1])
            except MnsError as exc:
                return json_response({"error": exc.message}, status=exc.status)
            return json_response({"queue": parts[1], "now": self.model.now_ms(),
                                  "messages": messages})
        if request.method == "GET" and parts == ["topics"]:
            return json_response({"topics": self.model.topics.overview()})
        return super().control_extra(name, request, body)
