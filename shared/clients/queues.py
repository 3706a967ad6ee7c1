"""MNS queues and topics (aliyun-mns-sdk), errors as ``CloudCallError``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.errors import TRANSIENT_CODES, CloudCallError
from shared.retry import retrying

if TYPE_CHECKING:
    from mns.queue import Queue


class Queues:
    """MNS queues and topics by name. The SDK's ``Account`` holds one HTTP connection that is
    not thread-safe (aliyun-mns-sdk ``mns/mns_http.py``: one ``HTTPConnection`` per client), so
    each thread that sends (``shared.parallel`` runs sends side by side) gets its own."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._local = threading.local()

    @property
    def account(self) -> Any:
        account = getattr(self._local, "account", None)
        if account is None:
            from mns.account import Account

            creds = self._settings.credentials
            account = Account(self._settings.mns_url, creds.access_key_id,
                              creds.access_key_secret, creds.security_token)
            self._local.account = account
            self._local.queues = {}
        return account

    def get(self, name: str) -> Queue:
        account = self.account
        queues: dict[str, Queue] = self._local.queues
        if name not in queues:
            queue = account.get_queue(name)
            queue.set_encoding(False)  # our messages are JSON text; no client-side Base64
            queues[name] = queue
        return queues[name]

    def send(self, name: str, body: str, delay_seconds: int = 0) -> str:
        from mns.queue import Message

        sent = self._call("SendMessage",
                          lambda: self.get(name).send_message(Message(body, delay_seconds)))
        return str(sent.message_id)

    def publish(self, topic: str, body: str) -> str:
        from mns.topic import TopicMessage

        sent = self._call("PublishMessage",
                          lambda: self.account.get_topic(topic).publish_message(TopicMessage(body)))
        return str(sent.message_id)

    @staticmethod
    def _call(api: str, operation: Any) -> Any:
        """``operation`` with MNS errors as ``CloudCallError``, retried when transient (a
        repeated send at worst duplicates a message, which every consumer here tolerates)."""
        from mns.mns_exception import MNSExceptionBase

        def once() -> Any:
            try:
                return operation()
            except MNSExceptionBase as exc:
                code = getattr(exc, "type", "MNSError")
                transient = code in TRANSIENT_CODES or code.startswith(("NetWork", "Internal"))
                raise CloudCallError(api, code, str(getattr(exc, "message", exc)),
                                     transient) from exc

        return retrying(once)
