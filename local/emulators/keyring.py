"""The access keys the emulators accept, and which RAM role, if any, each key acts as."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from local.ram import Identity

# Told of every key bound (id, secret, token, identity); returns once that key is accepted.
BindListener = Callable[[str, str, str, Identity], None]


@dataclass(frozen=True)
class KeyRing:
    """The access keys an emulator accepts: id -> (secret, STS token or None).

    A pair registered with a token is an STS pair: requests signed with it must carry that
    token (``SecurityToken`` / ``security-token`` / ``x-oss-security-token``), as on the cloud.

    A key bound to an ``Identity`` (``bind``: a function's STS key and its role) is allowed
    only what that role's policies allow, call by call (``EmulatorApp.authorize``); a key
    without one is an account owner's (the users' keys of ``endpoints.json``, the host's own)
    and is allowed everything. One ring is shared by every emulator of a local cloud's
    process, so a key bound once is enforced by all of them; an emulator in a process of its
    own (``local.emulators.process``) keeps a copy of the ring, kept up to date through
    ``listeners``: ``bind`` returns only once each of them has accepted the key.
    """

    keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    identities: dict[str, Identity] = field(default_factory=dict)
    listeners: list[BindListener] = field(default_factory=list, compare=False)

    def secret_for(self, access_key_id: str) -> str | None:
        entry = self.keys.get(access_key_id)
        return entry[0] if entry else None

    def token_ok(self, access_key_id: str, token: str | None) -> bool:
        entry = self.keys.get(access_key_id)
        if entry is None:
            return False
        expected = entry[1]
        return (not token) if expected is None else token == expected

    def bind(self, access_key_id: str, secret: str, token: str, identity: Identity) -> None:
        """Accept an STS pair from now on, acting as ``identity`` (a RAM role)."""
        for listener in list(self.listeners):  # the other processes' copies first
            listener(access_key_id, secret, token, identity)
        self.identities[access_key_id] = identity  # first: never usable unbound, even briefly
        self.keys[access_key_id] = (secret, token)

    def bound(self) -> list[tuple[str, str, str, Identity]]:
        """Every key bound so far, as ``bind`` took it (for a copy of the ring)."""
        return [(key, secret, token or "", self.identities[key])
                for key, (secret, token) in list(self.keys.items())
                if key in self.identities]

    def identity(self, access_key_id: str | None) -> Identity | None:
        """The role a key acts as; None for an owner's key (or an anonymous call)."""
        return self.identities.get(access_key_id) if access_key_id else None
