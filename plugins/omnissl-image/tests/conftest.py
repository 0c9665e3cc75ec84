"""Fixtures of the omnissl-image tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # ImageFolder records the files it has decoded under $OMNISSL_CACHE/image: keep the tests' out of ~/.cache
    monkeypatch.setenv("OMNISSL_CACHE", str(tmp_path_factory.mktemp("omnissl-cache")))
