"""The operator's key: from OPTIINFRA_ADMIN_KEY, or generated once for local use.

Only the key's digest is kept on disk (`<data dir>/operator_key.sha256`, mode 0600); the key itself is printed
once, when it is generated. Lost it? Delete that file and restart: a new key is generated and printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from optiinfra.auth.keys import generate_key, key_digest, role_of
from optiinfra.auth.principal import Role
from optiinfra.errors import ConfigurationError
from optiinfra.files import private_directory

ADMIN_KEY_ENV = "OPTIINFRA_ADMIN_KEY"
DIGEST_FILE = "operator_key.sha256"


@dataclass(frozen=True)
class OperatorKey:
    digest: str
    new_key: str | None = None  # set only when this call generated the key, so the caller can print it once


def load_operator_key(data_dir: Path) -> OperatorKey:
    """The operator key's digest; generates and stores a key when none is configured."""
    configured = os.environ.get(ADMIN_KEY_ENV, "").strip()
    if configured:
        if role_of(configured) is not Role.OPERATOR or len(configured) < 32:
            raise ConfigurationError(
                f"{ADMIN_KEY_ENV} must be an operator key: 'oi_op_' followed by at least 26 random characters.",
                fix="Generate one: python -c \"import secrets; print('oi_op_' + secrets.token_urlsafe(32))\"",
            )
        return OperatorKey(digest=key_digest(configured))
    path = data_dir / DIGEST_FILE
    if path.exists():
        return OperatorKey(digest=path.read_text(encoding="ascii").strip())
    private_directory(data_dir)
    key = generate_key(Role.OPERATOR)
    # O_EXCL: two servers starting at once must not both generate (and print) a key.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return OperatorKey(digest=path.read_text(encoding="ascii").strip())
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key_digest(key) + "\n")
    return OperatorKey(digest=key_digest(key), new_key=key)
