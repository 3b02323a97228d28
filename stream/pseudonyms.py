"""Officer pseudonyms: a keyed hash in place of the officer id in every output.

``p<version>-`` and the first 128 bits of HMAC-SHA256(key, officer id), in
hex. Without the key the id cannot be recovered or guessed from a list of
officer ids (a plain hash could be: the ids are few and structured); with it,
the same officer gets the same pseudonym on every day and in every output, so
an evaluation can still count visits per officer. The version names the key,
so pseudonyms made under a rotated key are told apart rather than mixed.

Keys live in a file readable by the worker only: 32 random bytes or more,
raw or as hex (``head -c 32 /dev/urandom > key``, ``openssl rand -hex 32``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
DIGEST_HEX_CHARS = 32  # 128 bits: collisions among a force's officers are out of reach
MAX_REMEMBERED = 500_000  # pseudonyms kept for reuse; beyond, they are made afresh (about 1 us each)


class PseudonymKeyError(ValueError):
    """The pseudonym key file is missing, too short or readable by others."""


def read_key(path: str | Path) -> bytes:
    """The key in ``path``: hex text (64+ hex digits) or raw bytes, at least 32 bytes either way."""
    p = Path(path)
    try:
        data = p.read_bytes()
        mode = p.stat().st_mode
    except OSError as exc:
        raise PseudonymKeyError(f"pseudonym key file {str(path)!r}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PseudonymKeyError(f"pseudonym key file {str(path)!r} is readable by others: chmod 600 it")
    text = data.strip()
    try:
        key = bytes.fromhex(text.decode("ascii")) if len(text) >= 2 * MIN_KEY_BYTES else data
    except (UnicodeDecodeError, ValueError):
        key = data
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"pseudonym key file {str(path)!r} holds {len(key)} bytes; at least "
                                f"{MIN_KEY_BYTES} are needed (head -c 32 /dev/urandom > key)")
    return key


class Pseudonymiser:
    """Officer id -> pseudonym, remembered per id (a force has thousands of officers, not millions)."""

    def __init__(self, key: bytes, version: int = 1) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"a pseudonym key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self.prefix = f"p{int(version)}-"
        self._known: dict[str, str] = {}

    @classmethod
    def from_file(cls, path: str | Path, version: int = 1) -> "Pseudonymiser":
        return cls(read_key(path), version)

    def __repr__(self) -> str:  # never the key
        return f"Pseudonymiser({self.prefix!r})"

    def one(self, officer_id: str) -> str:
        known = self._known.get(officer_id)
        if known is None:
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
            digest = hmac.new(self._key, officer_id.encode("utf-8"), hashlib.sha256).hexdigest()
            known = self._known[officer_id] = self.prefix + digest[:DIGEST_HEX_CHARS]
        return known

    def many(self, officer_ids: np.ndarray) -> np.ndarray:
        """The pseudonyms of an array of ids, as an object array of str."""
        one = self.one
        return np.array([one(o) for o in officer_ids.tolist()], dtype=object)
