"""Files OptiInfra writes are private to the user running it: directories 0700, files 0600.

The data directory holds the embedded database, the operator key's digest, workflow artifacts (reports about a
tenant's fleet) and the rollout simulator's state; none of it is for other local users.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_MODE = 0o700
# Run as root, the embedded PostgreSQL runs its server as a user of its own (PostgreSQL refuses root), which must be
# able to pass through the data directory to its cluster: others may traverse, but not list or read.
ROOT_DIRECTORY_MODE = 0o711
FILE_MODE = 0o600


def directory_mode() -> int:
    return ROOT_DIRECTORY_MODE if hasattr(os, "geteuid") and os.geteuid() == 0 else DIRECTORY_MODE


def private_directory(path: Path) -> Path:
    """Create `path` (and missing parents) if needed and make it private (0700; 0711 when run as root)."""
    mode = directory_mode()
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (replacing it) as a 0600 file, in a 0700 directory."""
    private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)  # an existing file keeps its mode through O_CREAT
        handle.write(data)
