"""Reading the database URL and data directory from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiinfra.config import load_settings, parse_database_url
from optiinfra.errors import ConfigurationError


@pytest.mark.parametrize(
    "raw",
    ["postgresql://u:p@db:5432/app", "postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"],
)
def test_postgres_urls_are_pinned_to_psycopg3(raw: str) -> None:
    url = parse_database_url(raw)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.password) == ("db", 5432, "app", "p")


@pytest.mark.parametrize("raw", ["sqlite:///x.db", "mysql://db/app", "::not a url::", "postgresql+psycopg2://db/app"])
def test_other_urls_are_refused_with_a_fix(raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(raw)
    assert caught.value.fix


def test_unset_url_means_embedded_and_data_dir_is_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPTIINFRA_DATABASE_URL", raising=False)
    monkeypatch.setenv("OPTIINFRA_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    assert settings.database_url is None
    assert settings.data_dir == tmp_path / "data"


def test_default_data_dir_is_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTIINFRA_DATA_DIR", raising=False)
    assert load_settings().data_dir.name == "optiinfra"
    assert str(Path.home()) in str(load_settings().data_dir)
