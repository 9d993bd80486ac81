"""Converters of ComiRec's raw Amazon Books and Taobao files, on tiny samples in the same formats."""

import json

import pytest

from recbole_rimirec.cli import main
from recbole_rimirec.convert import convert, filter_events
from recbole_rimirec.errors import ConfigError


def test_comirecs_filter_drops_rare_items_then_short_users():
    events = [("u1", f"i{k}", float(k)) for k in range(5)] * 1  # each item once: all dropped at size 2
    assert filter_events(events, size=2) == []
    events = [(u, i, t) for u in ("a", "b") for t, i in enumerate(["x", "y", "z"])] + [("c", "x", 9.0)]
    kept = filter_events(events, size=2)  # x, y, z seen 2+ times; c keeps 1 item < 2
    assert {u for u, _, _ in kept} == {"a", "b"} and len(kept) == 6


def test_taobao_sample(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = []
    for u in range(6):
        for k in range(6):
            rows.append(f"{u},{k},{k % 2},pv,{1000 + 10 * k + u}")
        rows.append(f"{u},99,7,buy,2000")  # not a page view: left out
    rows.append("7,0,0,pv,5")  # a user with one item: filtered
    (raw / "UserBehavior.csv").write_text("\n".join(rows) + "\n")
    found = convert("taobao", str(raw), str(tmp_path / "data"))
    assert (found["users"], found["items"], found["interactions"]) == (6, 6, 36)
    inter = (tmp_path / "data" / "taobao" / "taobao.inter").read_text().splitlines()
    assert inter[0] == "user_id:token\titem_id:token\ttimestamp:float" and len(inter) == 37
    item = (tmp_path / "data" / "taobao" / "taobao.item").read_text().splitlines()
    assert item[0] == "item_id:token\tcategory:token" and "1\t1" in item and "99\t7" not in item


def test_books_sample_reads_into_a_recbole_run(tmp_path, tiny):
    raw = tmp_path / "raw"
    raw.mkdir()
    reviews, meta = [], []
    for u in range(12):
        for k in range(8):
            item = f"B{(u + k) % 10:03d}"
            reviews.append(json.dumps({"reviewerID": f"R{u}", "asin": item, "unixReviewTime": 1000 + 100 * k + u}))
    for k in range(10):  # Python literals, as the published file is
        meta.append(repr({"asin": f"B{k:03d}", "categories": [["Books", "Fiction" if k < 5 else "History"]]}))
    (raw / "reviews_Books_5.json").write_text("\n".join(reviews) + "\n")
    (raw / "meta_Books.json").write_text("\n".join(meta) + "\n")
    out = str(tmp_path / "data")
    assert main(["convert", "amazon-books", "--raw", str(raw), "--out", out]) == 0
    item = (tmp_path / "data" / "amazon-books" / "amazon-books.item").read_text()
    assert "B000\tFiction" in item and "B009\tHistory" in item
    from recbole_rimirec.quick_start import run

    result = run(
        "SASRecAllPos",
        "amazon-books",
        config_dict={**tiny, "data_path": out, "epochs": 1, "topk": [5], "valid_metric": "NDCG@5"},
    )
    assert result["test_result"]["recall@5"] >= 0


@pytest.mark.parametrize("name, present", [("amazon-books", "reviews_Books_5.json"), ("taobao", None)])
def test_a_missing_raw_file_is_one_line(tmp_path, capsys, name, present):
    if present:
        (tmp_path / present).write_text("{}\n")
    assert main(["convert", name, "--raw", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: raw file not found: ") and err.count("\n") == 1


def test_a_malformed_line_is_named(tmp_path):
    (tmp_path / "UserBehavior.csv").write_text("1,2,3,pv,10\n1,2,3\n")
    with pytest.raises(ConfigError, match="UserBehavior.csv: line 2 has 3 fields"):
        convert("taobao", str(tmp_path), str(tmp_path / "out"))
