"""Password hashing with argon2id. The cost is configurable so tests can hash
cheaply; hashing is CPU-bound, so async callers run it on a worker thread."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 1024


class Passwords:
    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(
            time_cost=max(1, time_cost), memory_cost=max(8, memory_kib), parallelism=1
        )
        # Verified against when the account does not exist, so a wrong email
        # costs the same time as a wrong password.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._decoy, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def check_new_password(password: object) -> str | None:
    """What is wrong with a new password, or None if it will do."""
    if not isinstance(password, str):
        return "must be a string"
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    return None


def random_password() -> str:
    return secrets.token_urlsafe(15)
