"""API keys: a recognisable prefix per role, shown once, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from optiinfra.auth.principal import Role

KEY_PREFIXES: dict[Role, str] = {
    Role.OPERATOR: "oi_op_",
    Role.CUSTOMER: "oi_cu_",
    Role.AGENT: "oi_ag_",
}


def generate_key(role: Role) -> str:
    """A new random key for `role`: its prefix and 256 bits of randomness."""
    return KEY_PREFIXES[role] + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The SHA-256 hex digest stored in place of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def role_of(key: str) -> Role | None:
    """The role a key's prefix claims, or None for a key that is not OptiInfra's."""
    for role, prefix in KEY_PREFIXES.items():
        if key.startswith(prefix):
            return role
    return None


def digests_match(stored_digest: str, key: str) -> bool:
    """Compare a presented key with a stored digest in constant time."""
    return hmac.compare_digest(stored_digest.encode("ascii"), key_digest(key).encode("ascii"))
