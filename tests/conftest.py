"""Shared fixtures: the tiny data set under tests/data and tiny model sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests draw tree-shaped inputs, which a loaded 2-core machine makes slow to generate: the
# health check would fail the test for the machine's load, not for the code.
settings.register_profile("plugin", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("plugin")

DATA = Path(__file__).parent / "data"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Config overrides for a fast run on tests/data/tiny; runs write logs and checkpoints in tmp_path."""
    monkeypatch.chdir(tmp_path)
    return {
        "data_path": str(DATA),
        "checkpoint_dir": str(tmp_path / "saved"),
        "show_progress": False,
        "state": "WARNING",
        "epochs": 2,
        "stopping_step": 2,
        "hidden_size": 16,
        "embedding_size": 16,
        "inner_size": 32,
        "n_layers": 1,
        "n_heads": 1,
        "MAX_ITEM_LIST_LENGTH": 20,
        "train_batch_size": 256,
        "eval_batch_size": 1024,
        "hidden_dropout_prob": 0.1,
        "attn_dropout_prob": 0.1,
    }
