"""The dataset hook: builds the item tree from the train split and attaches codes to the items.

RecBole's ``SequentialDataset`` makes its prefix rows before ``build()`` splits, so everything
seen before the split holds valid and test targets. The tree is built in :meth:`TreeDataset.build`
from the train split only (each user's training sequence, counted once per user). The codes are
attached as the item feature ``tree_code`` (aligned with RecBole's remapped ids, padding row 0)
so any model can use them; since ``Dataset.join`` copies item features into every batch by
``item_id``, eval batches then carry the target's path: RimiRec reads codes from its own buffer,
indexed by history item ids, never from the batch.
"""

from __future__ import annotations

import os
from time import perf_counter

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

from recbole_rimirec.data.loaders import train_sequences
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.tree.itemtree import ItemTree, build_tree, check_tree_shape, token_digest
from recbole_rimirec.tree.vectors import normalize_rows, ppmi_svd_vectors, pretrained_vectors, token_feature_vectors

CODE_FIELD = "tree_code"
VECTOR_PARTS = ("cooccurrence", "pretrained", "features")  # tree_vectors: one of them, or several joined by '+'
REBUILD_PARTS = ("model", *VECTOR_PARTS)  # tree_rebuild_vectors: 'model' is the model's own item embeddings


def tree_settings(config) -> dict:
    """The config keys that decide the tree, checked.

    Args:
        config: the run's Config.

    Returns:
        dict: branching, leaf_size, max_depth, vectors, vector_dim, max_pairs, vectors_file, seed.
    """
    settings = {
        "branching": config["tree_branching"],
        "leaf_size": config["tree_leaf_size"],
        "max_depth": config["tree_max_depth"],
        "vectors": config["tree_vectors"] or "cooccurrence",
        "vector_dim": config["tree_vector_dim"] or 64,
        "max_pairs": config["tree_max_pairs"],
        "vectors_file": config["tree_vectors_file"],
        "feature_fields": config["tree_feature_fields"],
        "seed": config["seed"],
    }
    check_tree_shape(settings["branching"], settings["leaf_size"], settings["max_depth"])
    _check_vector_parts("tree_vectors", settings["vectors"], VECTOR_PARTS, settings["vectors_file"])
    rebuild = config["tree_rebuild"]
    if (
        rebuild is not None
        and rebuild != "plateau"
        and (isinstance(rebuild, bool) or not isinstance(rebuild, int) or rebuild < 1)
    ):
        raise ConfigError(
            f"tree_rebuild must be ~ (None on the command line), 'plateau' or a number of epochs >= 1, not {rebuild}"
        )
    _check_vector_parts(
        "tree_rebuild_vectors", config["tree_rebuild_vectors"] or "model", REBUILD_PARTS, settings["vectors_file"]
    )
    return settings


def _check_vector_parts(key: str, value, allowed: tuple[str, ...], vectors_file) -> None:
    """Checks a '+'-joined list of vector parts (each allowed, none twice; 'pretrained' needs its file)."""
    parts = str(value).split("+")
    if any(part not in allowed for part in parts) or len(set(parts)) != len(parts):
        raise ConfigError(f"{key} '{value}' is not one of {', '.join(allowed)} or several joined by '+'")
    if "pretrained" in parts and not vectors_file:
        raise ConfigError(f"{key}: {value} needs tree_vectors_file")


class TreeDataset(SequentialDataset):
    """A ``SequentialDataset`` whose ``build()`` also builds (or loads) the item tree.

    Config keys: ``tree_branching``, ``tree_leaf_size``, ``tree_max_depth``, ``tree_vectors``
    (``cooccurrence`` | ``pretrained`` | ``features``, or several joined by ``+``, each part unit length),
    ``tree_vector_dim``, ``tree_vectors_file``, ``tree_feature_fields``, ``tree_file``
    (load the tree from this ``.npz`` if it exists, else build and save it there).

    Attributes:
        tree (ItemTree): set by :meth:`build`, shared with the three splits.
    """

    tree: ItemTree | None = None

    def build(self):
        datasets = super().build()
        train = datasets[0]
        self.tree = self._load_or_build(train)
        self._attach_codes(self.tree.codes)
        for split in datasets:
            split.tree = self.tree
            split.item_feat = self.item_feat
        return datasets

    def _load_or_build(self, train) -> ItemTree:
        settings = tree_settings(self.config)
        tokens = self.field2id_token[self.iid_field]
        expected = {k: settings[k] for k in ("branching", "leaf_size", "max_depth", "vectors", "vector_dim", "seed")}
        expected["vectors_file"] = os.path.basename(settings["vectors_file"]) if settings["vectors_file"] else None
        if "cooccurrence" in settings["vectors"]:
            expected["max_pairs"] = settings["max_pairs"]
        if "features" in settings["vectors"]:
            expected["feature_fields"] = self._feature_fields(settings["feature_fields"])
        expected["items"] = token_digest(tokens)
        path = self.config["tree_file"]
        if path and os.path.isfile(path):
            tree = ItemTree.load(path)
            found = {k: tree.meta.get(k) for k in expected}
            if found != expected or tree.n_items != len(tokens):
                diff = sorted(k for k in expected if found[k] != expected[k]) or ["n_items"]
                raise ConfigError(
                    f"tree_file {path} was built with other {', '.join(diff)}; delete it or point tree_file elsewhere"
                )
            self.logger.info(f"item tree loaded from {path}")
            return tree
        start = perf_counter()
        vectors, order = self._tree_vectors(train, settings["vectors"], settings, expected.get("feature_fields"))
        vectors_s, start = perf_counter() - start, perf_counter()
        tree = build_tree(
            vectors, settings["branching"], settings["leaf_size"], settings["max_depth"], settings["seed"], expected
        )
        tree.perm = order[tree.perm]
        self.logger.info(
            f"item tree: {len(tokens) - 1} items, {settings['vectors']} vectors in {vectors_s:.1f} s, "
            f"hierarchical k-means in {perf_counter() - start:.1f} s: {int((tree.node_depth == 1).sum())} top-level "
            f"nodes, {int(tree.is_leaf.sum())} leaves, depth {tree.depth}"
        )
        if path:
            tree.save(path)
            self.logger.info(f"item tree saved to {path}")
        return tree

    def _tree_vectors(self, train, parts: str, settings: dict, feature_fields=None, model_vectors=None):
        """The item vectors a tree is built from, in canonical (token) order.

        Args:
            train: the train split (its sequences feed the co-occurrence part).
            parts: vector parts joined by '+' (``cooccurrence``, ``features``, ``pretrained``, ``model``).
            settings: :func:`tree_settings`.
            feature_fields: the item token fields of the ``features`` part.
            model_vectors: [n_items, H] a model's item embeddings by RecBole id (the ``model`` part).

        Returns:
            tuple: [n_items, d] float32 vectors with each part unit length, row i the item of canonical id i;
            [n_items] ``order``, canonical id -> RecBole id.

        Raises:
            ConfigError: when the train split has no interactions.
        """
        tokens = self.field2id_token[self.iid_field]
        if getattr(train, "train_sequences", None) is None:
            train.train_sequences = train_sequences(train)  # kept: the training loaders read them again
        _, flat, offsets = train.train_sequences
        if len(flat) == 0:
            raise ConfigError(f"dataset '{self.dataset_name}' has no training interactions to build the item tree")
        # Build in token order, not RecBole's id order (ids follow first appearance in the whole
        # file, valid/test rows included): the tree then depends on the training data alone.
        order = np.r_[0, 1 + np.argsort(tokens[1:].astype(str), kind="stable")]  # canonical id -> RecBole id
        to_canonical = np.empty_like(order)
        to_canonical[order] = np.arange(len(order))
        dim, seed = settings["vector_dim"], settings["seed"]
        vectors = []  # each [n_items, d_part], unit rows, in canonical order
        for part in parts.split("+"):
            if part == "cooccurrence":
                pairs = settings["max_pairs"]
                vectors.append(
                    ppmi_svd_vectors(to_canonical[flat], offsets, len(tokens), dim, seed=seed, max_pairs=pairs)
                )
            elif part == "features":
                columns = [self._feature_column(f)[order] for f in feature_fields]
                vectors.append(token_feature_vectors(columns, len(tokens), dim, seed=seed))
            elif part == "model":
                rows = np.asarray(model_vectors, dtype=np.float32).copy()
                rows[0] = 0.0
                vectors.append(normalize_rows(rows)[order])
            else:  # pretrained
                vectors.append(pretrained_vectors(settings["vectors_file"], tokens, self.dataset_name)[order])
        # each part unit length, equal weight; one part alone is used as made (its rows are unit length
        # already, and renormalising moves float bits, so trees built before would change)
        if "+" not in parts and parts in ("pretrained", "model"):
            return vectors[0], order
        return normalize_rows(np.concatenate(vectors, axis=1)), order

    def rebuild_tree(self, model_vectors) -> ItemTree:
        """A new tree from a model's learned item embeddings (``tree_rebuild``), built as the first one.

        Called on the train split during training; the parts come from ``tree_rebuild_vectors``
        (``model`` stands for the embeddings given here). The item feature ``tree_code`` keeps the
        first tree's codes: RimiRec reads the codes of the tree it holds, never the batch's.

        Args:
            model_vectors: [n_items, H] item embeddings by RecBole id (row 0 padding).

        Returns:
            ItemTree: the tree, its ``meta`` recording the parts it was built from.
        """
        settings = tree_settings(self.config)
        parts = self.config["tree_rebuild_vectors"] or "model"
        fields = self._feature_fields(settings["feature_fields"]) if "features" in parts else None
        start = perf_counter()
        vectors, order = self._tree_vectors(self, parts, settings, fields, model_vectors)
        meta = {"vectors": parts, "rebuilt": True, "seed": settings["seed"]}
        shape = settings["branching"], settings["leaf_size"], settings["max_depth"]
        tree = build_tree(vectors, *shape, settings["seed"], meta)
        tree.perm = order[tree.perm]
        self.logger.info(
            f"item tree rebuilt from {parts} vectors in {perf_counter() - start:.1f} s: "
            f"{int((tree.node_depth == 1).sum())} top-level nodes, {int(tree.is_leaf.sum())} leaves"
        )
        return tree

    def _feature_fields(self, fields) -> list[str]:
        """The item token fields the feature vectors read (``tree_feature_fields``, else all)."""
        usable = [
            f
            for f in (self.item_feat.columns if self.item_feat is not None else [])
            if f != self.iid_field and self.field2type[f] in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ)
        ]
        if fields is None:
            fields = usable
        fields = [fields] if isinstance(fields, str) else list(fields)
        unknown = [f for f in fields if f not in usable]
        if unknown or not fields:
            raise ConfigError(
                f"tree_feature_fields {unknown or fields} are not token item features of '{self.dataset_name}' "
                f"(load them with load_col; token item features here: {usable or 'none'})"
            )
        return fields

    def _feature_column(self, field: str) -> np.ndarray:
        """[n_items, w] token ids of an item feature by item id (0 where an item has none)."""
        values = self.item_feat[field].numpy().reshape(len(self.item_feat), -1)
        out = np.zeros((self.item_num, values.shape[1]), dtype=np.int64)
        out[self.item_feat[self.iid_field].numpy()] = values
        return out

    def _attach_codes(self, codes: np.ndarray) -> None:
        depth = codes.shape[1]
        field = torch.from_numpy(codes.astype(np.int64))  # [n_items, depth]
        if self.item_feat is None:
            ids = torch.arange(len(codes))
            self.item_feat = Interaction({self.iid_field: ids, CODE_FIELD: field})
        else:
            order = self.item_feat[self.iid_field].numpy()
            self.item_feat.update(Interaction({CODE_FIELD: field[order]}))
        self.set_field_property(CODE_FIELD, FeatureType.TOKEN_SEQ, FeatureSource.ITEM, depth)
