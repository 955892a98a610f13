"""API keys (prefix + 256-bit random, stored as a SHA-256 hash) and argon2id password hashes."""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from argon2 import PasswordHasher

KEY_PREFIX = "lpw_"
# 32 random bytes: a key cannot be guessed, so a fast hash is enough to keep the stored
# value useless to a reader of the table (a slow KDF is for low-entropy passwords).
KEY_BYTES = 32

_passwords = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


def new_api_key() -> str:
    """A fresh plaintext key, shown to its owner once."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """What `api_keys.key_hash` holds for a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX) and len(token) < 200


async def hash_password(password: str) -> str:
    """argon2id hash, computed off the event loop (it takes tens of milliseconds by design)."""
    return await asyncio.to_thread(_passwords.hash, password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _passwords.verify(stored, password)
    except Exception:  # noqa: BLE001 - mismatch, or not an argon2 hash (e.g. "!")
        return False
