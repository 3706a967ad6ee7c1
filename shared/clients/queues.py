"""MNS queues and topics (aliyun-mns-sdk), errors as ``CloudCallError``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.errors import TRANSIENT_CODES, CloudCallError
from shared.retry import retrying

if TYPE_CHECKING:
    from mns.queue import Queue


class Queues:
    """MNS queues and topics by name. One ``Account`` per function instance: the SDK's
    connection is not thread-safe, and an FC instance handles one request at a time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._account: Any = None
        self._queues: dict[str, Queue] = {}

    @property
    def account(self) -> Any:
        if self._account is None:
            from mns.account import Account

            creds = self._settings.credentials
            self._account = Account(self._settings.mns_url, creds.access_key_id,
                                    creds.access_key_secret, creds.security_token)
        return self._account

    def get(self, name: str) -> Queue:
        if name not in self._queues:
            queue = self.account.get_queue(name)
            queue.set_encoding(False)  # our messages are JSON text; no client-side Base64
            self._queues[name] = queue
        return self._queues[name]

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
