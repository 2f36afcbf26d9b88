"""Hashing of secrets we only ever compare: station passwords and bearer tokens.

Station passwords (OCPP Security Profile 1) are hashed with PBKDF2-SHA256 and a salt, and
compared in constant time. Because a reconnect storm makes thousands of stations present the
same passwords within seconds, a successful verification is remembered in memory (keyed by a
digest, never the password) so the expensive hash runs once per password and process.

Bearer tokens we generate ourselves (operator API, OCPI) carry 256 random bits, so a plain
SHA-256 is enough to keep a database dump from handing them out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "hash_token", "new_token", "verify_password"]

_ALGORITHM = "pbkdf2_sha256"
_ITERATIONS = 120_000


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    """Return ``pbkdf2_sha256$ITERATIONS$SALT$HASH`` for ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Check ``password`` against a hash from ``hash_password``, in constant time."""
    try:
        algorithm, iterations, salt, expected = stored.split("$")
        if algorithm != _ALGORITHM:
            return False
        rounds = int(iterations)
        salt_bytes, expected_bytes = _unb64(salt), _unb64(expected)
    except ValueError:
        return False
    key = (stored, hashlib.sha256(password.encode()).digest())
    if key in _recently_verified:
        return True
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt_bytes, rounds)
    if hmac.compare_digest(digest, expected_bytes):
        _remember(key)
        return True
    return False


_recently_verified: dict[tuple[str, bytes], None] = {}
_REMEMBER_AT_MOST = 65536


def _remember(key: tuple[str, bytes]) -> None:
    if len(_recently_verified) >= _REMEMBER_AT_MOST:
        _recently_verified.pop(next(iter(_recently_verified)))
    _recently_verified[key] = None


def new_token() -> str:
    """Return a new random bearer token (256 bits, URL-safe, printable ASCII)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a generated token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()
