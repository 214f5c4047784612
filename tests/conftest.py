"""Shared fixtures: the real assets in ../shared (or $FACEQUANT_SHARED)."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # One cache per test session, set before any module-scoped fixture runs: tests never read
    # (or write) a developer's ~/.cache state.
    before = os.environ.get(settings.CACHE_ENV)
    os.environ[settings.CACHE_ENV] = str(tmp_path_factory.getbasetemp() / "cache")
    yield
    if before is None:
        os.environ.pop(settings.CACHE_ENV, None)
    else:
        os.environ[settings.CACHE_ENV] = before
