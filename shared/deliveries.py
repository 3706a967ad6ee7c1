"""Webhook replay protection: each signed delivery is accepted once.

The signature is claimed as an empty object ``{deliveries_prefix}/{signature}`` in the results
bucket (``Results.claim``, atomic in OSS): a second claim of the same signature fails — even
from another function instance. A lifecycle
rule can expire the markers after the 300 s window; they are tiny either way.
"""

from __future__ import annotations

from shared.clients import Results
from shared.errors import UnauthorizedError


class Deliveries:
    def __init__(self, results: Results, prefix: str) -> None:
        self._results = results
        self._prefix = prefix

    def _key(self, signature: str) -> str:
        return f"{self._prefix}/{signature}"

    def claim(self, signature: str) -> None:
        if not self._results.claim(self._key(signature)):
            raise UnauthorizedError("this signed delivery was already accepted; a replay is "
                                    "refused (sign each new delivery with a fresh timestamp, "
                                    "and use ClientToken to make retries safe)")

    def release(self, signature: str) -> None:
        """Forget a claim whose request was refused, so a corrected retry is not a replay."""
        self._results.release(self._key(signature))
