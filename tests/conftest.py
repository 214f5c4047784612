"""Shared fixtures: the real assets in ../shared (or $FACEQUANT_SHARED)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facequant import settings


def _need(path: Path) -> Path:
    if not path.exists():
        reason = f"shared asset missing: {path} (set {settings.SHARED_ENV})"
        if os.environ.get("FACEQUANT_REQUIRE_SHARED"):
            pytest.fail(reason)  # CI has ../shared: a missing asset there is a broken setup
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return _need(settings.shared_dir())


@pytest.fixture(scope="session")
def model_path() -> Path:
    return _need(settings.default_model_path())


@pytest.fixture(scope="session")
def detector_path() -> Path:
    return _need(settings.default_detector_path())


@pytest.fixture(scope="session")
def landmark_path() -> Path:
    return _need(settings.default_landmark_path())


@pytest.fixture(scope="session")
def celebs13() -> Path:
    return _need(settings.default_dataset_path())


@pytest.fixture(scope="session")
def multi_face(shared: Path) -> Path:
    return _need(shared / "datasets" / "multi-face")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # One cache per test session: tests never read a developer's ~/.cache state.
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "cache"))
