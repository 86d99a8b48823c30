"""API keys and the operator key."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from optiinfra.auth.keys import KEY_PREFIXES, digests_match, generate_key, key_digest, role_of
from optiinfra.auth.operator_key import ADMIN_KEY_ENV, DIGEST_FILE, load_operator_key
from optiinfra.auth.principal import Role
from optiinfra.errors import ConfigurationError


@pytest.mark.parametrize("role", list(Role))
def test_keys_carry_their_role_prefix_and_are_unique(role: Role) -> None:
    keys = {generate_key(role) for _ in range(50)}
    assert len(keys) == 50
    assert all(key.startswith(KEY_PREFIXES[role]) and role_of(key) is role for key in keys)
    assert all(len(key) >= len(KEY_PREFIXES[role]) + 43 for key in keys)


def test_digest_is_sha256_and_comparison_checks_the_whole_key() -> None:
    key = generate_key(Role.CUSTOMER)
    assert key_digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert digests_match(key_digest(key), key)
    assert not digests_match(key_digest(key), key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_unknown_prefix_has_no_role() -> None:
    assert role_of("sk_live_123") is None


def test_operator_key_is_generated_once_with_owner_only_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    first = load_operator_key(tmp_path)
    assert first.new_key is not None
    assert first.new_key.startswith("oi_op_")
    path = tmp_path / DIGEST_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.new_key not in path.read_text()
    assert path.read_text().strip() == key_digest(first.new_key)
    second = load_operator_key(tmp_path)
    assert second.new_key is None
    assert second.digest == first.digest


def test_operator_key_from_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key(Role.OPERATOR)
    monkeypatch.setenv(ADMIN_KEY_ENV, key)
    loaded = load_operator_key(tmp_path)
    assert loaded.digest == key_digest(key)
    assert loaded.new_key is None
    assert not (tmp_path / DIGEST_FILE).exists()


@pytest.mark.parametrize("bad", ["short", "oi_cu_" + "x" * 40, "oi_op_abc"])
def test_operator_key_from_the_environment_must_look_like_one(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADMIN_KEY_ENV, bad)
    with pytest.raises(ConfigurationError):
        load_operator_key(tmp_path)
