"""Bad input: each case works as documented or stops with one clear ConfigError."""

import pytest

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.quick_start import run

HEADER = "user_id:token\titem_id:token\ttimestamp:float"


def write(tmp_path, name, rows, header=HEADER):
    folder = tmp_path / "data" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.inter").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return str(tmp_path / "data")


def base_rows(users=40, length=8, items=30):
    return [f"u{u}\ti{(u * 7 + t * 3) % items}\t{t}" for u in range(users) for t in range(length)]


def settings(tiny, path, **extra):
    return {**tiny, "data_path": path, "epochs": 1, "topk": [5, 10], "valid_metric": "NDCG@10", **extra}


def test_empty_dataset(tiny, tmp_path):
    path = write(tmp_path, "empty", [])
    with pytest.raises(ConfigError, match="no interactions"):
        run("Pop", "empty", config_dict=settings(tiny, path))


def test_users_with_one_interaction_and_duplicates_and_unicode_tokens(tiny, tmp_path):
    rows = base_rows() + ["lonely\ti1\t0", "u1\ti1\t100", "u1\ti1\t101", "ユーザー 1\tÄpfel mit Sahne\t0"]
    rows += ["ユーザー 1\ti2\t1", "ユーザー 1\ti3\t2", "ユーザー 1\ti4\t3"]
    path = write(tmp_path, "odd", rows)
    result = run("SASRecAllPos", "odd", config_dict=settings(tiny, path))
    assert 0 <= result["test_result"]["ndcg@10"] <= 1


def test_items_only_in_test_get_the_cold_node(tiny, tmp_path):
    rows = base_rows() + [f"u{u}\tfresh{u}\t99" for u in range(5)]  # last interaction of 5 users: test only
    path = write(tmp_path, "cold", rows)
    tree = {"tree_branching": 4, "tree_leaf_size": 8, "tree_max_depth": 2, "tree_vector_dim": 8}
    result = run("RimiRec", "cold", config_dict=settings(tiny, path, **tree))
    assert result["library_fraction"] > 0


def test_non_numeric_timestamps(tiny, tmp_path):
    path = write(tmp_path, "badtime", [r.rsplit("\t", 1)[0] + "\tyesterday" for r in base_rows()])
    with pytest.raises(ConfigError, match="timestamp"):
        run("SASRecAllPos", "badtime", config_dict=settings(tiny, path))


def test_topk_larger_than_the_library(tiny, tmp_path):
    path = write(tmp_path, "small", base_rows(items=30))
    with pytest.raises(ConfigError, match="topk"):
        run("Pop", "small", config_dict=settings(tiny, path, topk=[10, 500]))


def test_no_time_column(tiny, tmp_path):
    """RecBole sorts by the missing column deep in build() and raises with the whole batch printed."""
    path = write(tmp_path, "notime", [r.rsplit("\t", 1)[0] for r in base_rows()], header="user_id:token\titem_id:token")
    with pytest.raises(ConfigError, match="no time column 'timestamp'"):
        run("SASRecAllPos", "notime", config_dict=settings(tiny, path))
