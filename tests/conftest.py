"""Shared fixtures: a small dataset, and a private datasets folder for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

from ego_dgl.data import Dataset, load_dataset


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_datasets_root: keep $EGODGL_DATASETS as it is instead of a temporary folder"
    )


@pytest.fixture(autouse=True)
def datasets_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path | None:
    """Points $EGODGL_DATASETS at an empty temporary folder so that no test reads or
    writes the user's prepared datasets (opt out with @pytest.mark.real_datasets_root)."""
    if request.node.get_closest_marker("real_datasets_root"):
        return None
    root = tmp_path_factory.mktemp("datasets")
    monkeypatch.setenv("EGODGL_DATASETS", str(root))
    return root


@pytest.fixture
def tiny() -> Dataset:
    """synthetic-tiny: 60 users, 80 items, 900 interactions, 3 modalities."""
    return load_dataset("synthetic-tiny")
