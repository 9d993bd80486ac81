"""Converters from the raw files ComiRec's repository points to into RecBole atomic files.

Reference: THUDM/ComiRec, ``preprocess/data.py`` and ``preprocess/category.py`` (KDD 2020). The
same reading and filtering, written as RecBole atomic files with the items' categories:

* ``amazon-books``: ``reviews_Books_5.json`` (one JSON review per line: ``reviewerID``, ``asin``,
  ``unixReviewTime``) and ``meta_Books.json`` (one Python-literal record per line: ``asin``,
  ``categories``; an item's category is the last entry of its first category path);
* ``taobao``: ``UserBehavior.csv`` (``user,item,category,behavior,timestamp``; page views only).

Filtering as ComiRec's: items with fewer than 5 interactions are dropped, then users with fewer than
5 of the remaining items. Output: ``<out>/<name>/<name>.inter`` (``user_id``, ``item_id``,
``timestamp``) and ``<name>.item`` (``item_id``, ``category``). Run with
``recbole-rimirec convert amazon-books --raw <folder of the raw files> --out <data_path>``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator

from recbole_rimirec.errors import ConfigError

FILTER = 5  # ComiRec's filter_size
RAW_FILES = {"amazon-books": ("reviews_Books_5.json", "meta_Books.json"), "taobao": ("UserBehavior.csv",)}


def _lines(path: str) -> Iterator[str]:
    if not os.path.isfile(path):
        raise ConfigError(f"raw file not found: {path}")
    with open(path, encoding="utf-8") as f:
        yield from (line for line in f if line.strip())


def read_books(raw: str) -> tuple[list[tuple[str, str, float]], dict[str, str]]:
    """Amazon Books: (user, item, time) reviews and each item's category.

    Args:
        raw: the folder holding ``reviews_Books_5.json`` and ``meta_Books.json``.

    Returns:
        (events, category): the reviews, and item -> category (the last entry of its first path).

    Raises:
        ConfigError: for a missing file or a line that cannot be read, naming the file and line.
    """
    reviews, meta = (os.path.join(raw, f) for f in RAW_FILES["amazon-books"])
    for path in (reviews, meta):  # both checked before the long read
        if not os.path.isfile(path):
            raise ConfigError(f"raw file not found: {path}")
    events = []
    for number, line in enumerate(_lines(reviews), 1):
        try:
            r = json.loads(line)
            events.append((str(r["reviewerID"]), str(r["asin"]), float(r["unixReviewTime"])))
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{reviews}: line {number} is not a review with reviewerID, asin, unixReviewTime"
            ) from None
    category = {}
    for number, line in enumerate(_lines(meta), 1):
        try:
            r = ast.literal_eval(line.strip())  # the file holds Python literals, not JSON
            paths = r.get("categories") or [[]]
            if paths[0]:
                category[str(r["asin"])] = str(paths[0][-1])
        except (ValueError, SyntaxError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"{meta}: line {number} is not an item record with asin and categories") from None
    return events, category


def read_taobao(raw: str) -> tuple[list[tuple[str, str, float]], dict[str, str]]:
    """Taobao UserBehavior: page views (user, item, time) and each item's category.

    Args:
        raw: the folder holding ``UserBehavior.csv``.

    Returns:
        (events, category).

    Raises:
        ConfigError: for a missing file or a malformed line.
    """
    path = os.path.join(raw, RAW_FILES["taobao"][0])
    events, category = [], {}
    for number, line in enumerate(_lines(path), 1):
        parts = line.strip().split(",")
        if len(parts) != 5:
            raise ConfigError(f"{path}: line {number} has {len(parts)} fields, not user,item,category,behavior,time")
        user, item, cat, behavior, time = parts
        if behavior != "pv":
            continue
        try:
            events.append((user, item, float(time)))
        except ValueError:
            raise ConfigError(f"{path}: line {number}: timestamp {time!r} is not a number") from None
        category[item] = cat
    return events, category


def filter_events(events: list[tuple[str, str, float]], size: int = FILTER) -> list[tuple[str, str, float]]:
    """ComiRec's filter: items seen at least ``size`` times, then users with at least ``size`` of them.

    Args:
        events: (user, item, time).
        size: the threshold.

    Returns:
        list: the kept events, each user's in time order (stable), users in first-seen order.
    """
    items = Counter(item for _, item, _ in events)
    kept = [e for e in events if items[e[1]] >= size]
    by_user = defaultdict(list)
    for user, item, time in kept:
        by_user[user].append((user, item, time))
    out = []
    for rows in by_user.values():
        if len(rows) >= size:
            out.extend(sorted(rows, key=lambda r: r[2]))
    return out


def write_atomic(name: str, out: str, events, category: dict[str, str]) -> tuple[str, str]:
    """Writes ``<out>/<name>/<name>.inter`` and ``.item``.

    Args:
        name: the data set name.
        out: the data path (a folder per data set goes inside).
        events: (user, item, time), filtered.
        category: item -> category token.

    Returns:
        (inter_path, item_path).
    """
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    inter, item = os.path.join(folder, f"{name}.inter"), os.path.join(folder, f"{name}.item")
    with open(inter, "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, it, time in events:
            f.write(f"{user}\t{it}\t{time:g}\n")
    with open(item, "w", encoding="utf-8") as f:
        f.write("item_id:token\tcategory:token\n")
        for it in dict.fromkeys(it for _, it, _ in events):
            f.write(f"{it}\t{category.get(it, '')}\n")
    return inter, item


def convert(name: str, raw: str, out: str, size: int = FILTER) -> dict:
    """Reads, filters and writes one data set.

    Args:
        name: ``amazon-books`` or ``taobao``.
        raw: the folder of the raw files.
        out: the data path to write into.
        size: ComiRec's filter threshold.

    Returns:
        dict: ``users``, ``items``, ``interactions`` and the two file paths.
    """
    if name not in RAW_FILES:
        raise ConfigError(f"convert: '{name}' is not one of {', '.join(RAW_FILES)}")
    events, category = (read_books if name == "amazon-books" else read_taobao)(raw)
    kept = filter_events(events, size)
    if not kept:
        raise ConfigError(f"convert {name}: no user keeps {size} items of {size}+ interactions")
    inter, item = write_atomic(name, out, kept, category)
    return {
        "users": len({u for u, _, _ in kept}),
        "items": len({i for _, i, _ in kept}),
        "interactions": len(kept),
        "inter": inter,
        "item": item,
    }


def main(argv: list[str] | None = None) -> int:
    """``recbole-rimirec convert``: user mistakes print one line and return 2."""
    parser = argparse.ArgumentParser(prog="recbole-rimirec convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RAW_FILES))
    parser.add_argument("--raw", required=True, help="folder holding the raw files")
    parser.add_argument("--out", required=True, help="data path: <out>/<name>/ gets the atomic files")
    options = parser.parse_args(argv)
    try:
        found = convert(options.name, options.raw, options.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{found['users']} users, {found['items']} items, {found['interactions']} interactions -> {found['inter']}")
    return 0
