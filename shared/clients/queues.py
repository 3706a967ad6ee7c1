"""MNS queues and topics (aliyun-mns-sdk), errors as ``CloudCallError``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.errors import TRANSIENT_CODES, CloudCallError
from shared.retry import retrying

if TYPE_CHECKING:
    from mns.queue import Queue


class Queues:
    """MNS queues and topics by name. The SDK's ``Account`` holds one HTTP connection that is
    not thread-safe (aliyun-mns-sdk ``mns/mns_http.py``: one ``HTTPConnection`` per client), so
    each call borrows an idle one (a call made side by side with another, ``shared.parallel``,
    gets one of its own) and gives it back, its connection kept alive for the next call of
    this warm instance."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def _account(self) -> Iterator[Any]:
        with self._lock:
            account = self._idle.pop() if self._idle else None
        if account is None:
            from mns.account import Account

            creds = self._settings.credentials
            account = Account(self._settings.mns_url, creds.access_key_id,
                              creds.access_key_secret, creds.security_token)
        try:
            yield account
        finally:
            with self._lock:
                self._idle.append(account)

    def send(self, name: str, body: str, delay_seconds: int = 0) -> str:
        from mns.queue import Message

        def once() -> Any:
            with self._account() as account:
                queue: Queue = account.get_queue(name)
                queue.set_encoding(False)  # our messages are JSON text; no client-side Base64
                return queue.send_message(Message(body, delay_seconds))

        return str(self._call("SendMessage", once).message_id)

    def send_batch(self, name: str, bodies: list[str]) -> None:
        """BatchSendMessage of at most 16 bodies (MNS's limit per call,
        https://www.alibabacloud.com/help/en/mns/developer-reference/api-mns-2015-06-06-batchsendmessage).
        Retried as a whole when transient: a body sent twice is a duplicate every consumer
        here tolerates."""
        from mns.queue import Message

        def once() -> Any:
            with self._account() as account:
                queue: Queue = account.get_queue(name)
                queue.set_encoding(False)
                return queue.batch_send_message([Message(body) for body in bodies])

        if bodies:
            self._call("BatchSendMessage", once)

    def publish(self, topic: str, body: str) -> str:
        from mns.topic import TopicMessage

        def once() -> Any:
            with self._account() as account:
                return account.get_topic(topic).publish_message(TopicMessage(body))

        return str(self._call("PublishMessage", once).message_id)

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
