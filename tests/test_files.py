"""OptiInfra's files are private to the user running it (issue 12: artifacts were 0644 in 0755 directories)."""

from __future__ import annotations

import stat
from pathlib import Path

from optiinfra.auth.operator_key import DIGEST_FILE, load_operator_key
from optiinfra.files import directory_mode, private_directory, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_directories_and_files_are_made_private_even_when_they_existed(tmp_path: Path) -> None:
    existing = tmp_path / "open"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    assert _mode(private_directory(existing)) == directory_mode()
    assert directory_mode() in {0o700, 0o711}  # 0711 only as root, so no one else can list or read
    target = existing / "nested" / "file.json"
    write_private(target, b"{}")
    assert _mode(target) == 0o600
    assert _mode(target.parent) == directory_mode()
    target.chmod(0o644)
    write_private(target, b"{}")
    assert _mode(target) == 0o600


def test_the_data_directory_and_the_operator_key_digest_are_private(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPTIINFRA_ADMIN_KEY", raising=False)
    data_dir = tmp_path / "data"
    key = load_operator_key(data_dir)
    assert key.new_key is not None
    assert _mode(data_dir) == directory_mode()
    assert _mode(data_dir / DIGEST_FILE) == 0o600
