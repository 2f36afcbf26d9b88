"""Secrets we must be able to send again: partners' OCPI tokens, encrypted at rest.

Tokens partners call *us* with are only compared, so they are stored as hashes
(``cpms.passwords.hash_token``). The token a partner gave us must be sent on every call
to it, so it cannot be hashed; it is encrypted with Fernet under a key kept in a file
outside the database, so a database dump alone does not hand it out.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from cpms.errors import ConfigError

__all__ = ["TokenVault"]


class TokenVault:
    """Encrypts and decrypts tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenVault:
        """Load the key from ``path``, creating the file (mode 0600) if it does not exist."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = Fernet.generate_key()
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(key + b"\n")
            return cls(key)
        try:
            return cls(path.read_bytes().strip())
        except (OSError, ValueError) as error:
            raise ConfigError(
                "CPMS_SECRET_KEY_FILE", str(path), f"a readable Fernet key file ({error})"
            ) from None

    def seal(self, token: str) -> str:
        """Return ``token`` encrypted, as text fit for a column."""
        return self._fernet.encrypt(token.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """Return the token ``seal`` encrypted; raise ``ValueError`` under another key."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise ValueError(
                "a partner token cannot be decrypted: the key file is not the one it was "
                "sealed with (CPMS_SECRET_KEY_FILE)"
            ) from None
