"""Secret settings read from files (SWEETSLICE_SECRETS_DIR), the way the charts mount them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsConfigDict
from shopkit.settings import SECRETS_DIR_ENV, ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SWEETSLICE_DEMO_", frozen=True, extra="ignore")
    service_name: str = "demo"


def test_production_settings_come_from_mounted_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As Kubernetes writes a Secret volume: one file per key, ending in a newline or not.
    (tmp_path / "SWEETSLICE_DEMO_INTERNAL_TOKEN").write_text("token-from-a-file\n")
    (tmp_path / "SWEETSLICE_DEMO_DATABASE_URL").write_text("postgresql://demo:pw@db:5432/demo")
    monkeypatch.setenv(SECRETS_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("SWEETSLICE_DEMO_ENVIRONMENT", "production")
    settings = DemoSettings()
    assert settings.internal_token.get_secret_value() == "token-from-a-file"
    assert settings.effective_database_url == "postgresql://demo:pw@db:5432/demo"


def test_an_environment_variable_wins_over_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "SWEETSLICE_DEMO_INTERNAL_TOKEN").write_text("from-file")
    monkeypatch.setenv(SECRETS_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("SWEETSLICE_DEMO_INTERNAL_TOKEN", "from-env")
    assert DemoSettings().internal_token.get_secret_value() == "from-env"


def test_a_named_folder_that_is_missing_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRETS_DIR_ENV, str(tmp_path / "not-mounted"))
    with pytest.raises(ValueError, match="not a directory"):
        DemoSettings()


def test_without_the_folder_only_the_environment_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "SWEETSLICE_DEMO_INTERNAL_TOKEN").write_text("ignored")
    monkeypatch.delenv(SECRETS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert DemoSettings().internal_token.get_secret_value() != "ignored"
