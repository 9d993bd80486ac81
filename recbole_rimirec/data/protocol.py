"""ComiRec's evaluation protocol (``eval_protocol: comirec``): users split 8:1:1, held-out users cut 80/20.

Reference: Y. Cen et al., "Controllable Multi-Interest Framework for Recommendation" (ComiRec,
KDD 2020), as its code evaluates (THUDM/ComiRec, ``preprocess/data.py`` and ``src/train.py``;
MIND and REMI use the same): the users are shuffled with a seed and split 8:1:1. A training user's
whole sequence is training data. A validation or test user is never trained on: the first
``int(0.8 n)`` of their ``n`` items are the input, the rest are the targets. The metrics, per user
over the target set: Recall@N = hits / targets, HR@N = any hit, NDCG@N the textbook one (ComiRec's
code divides by an ideal DCG over the hits, a known bug), Diversity@N the share of pairs of the top
N in different categories.

Here, inside RecBole's pipeline: :func:`with_user_split` gives a sequential dataset class whose
``build()`` splits this way, from RecBole's own prefix rows (so the tree of RimiRec, built from the
train split, never sees a held-out user). A held-out user is one row: the prefix row whose history
is the input, with the targets in a padded field. :class:`TargetsEvalDataLoader` hands every target
to RecBole's Collector as a positive of that row, so RecBole's Recall, Hit and NDCG are the
protocol's (tested against hand-worked examples).
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.dataset import SequentialDataset

from recbole_rimirec.errors import ConfigError

PROTOCOLS = ("leave_one_out", "comirec")
TARGETS_FIELD = "protocol_targets"  # [rows, T] a held-out row's targets, 0-padded
INPUT_SHARE = 0.8


def split_users(users: np.ndarray, seed: int, shares=(0.8, 0.1, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffles users with a seed and cuts them into train, valid and test, as ComiRec does.

    Args:
        users: [U] distinct user ids.
        seed: the shuffle's seed.
        shares: train and valid shares (the rest is test).

    Returns:
        (train, valid, test): disjoint arrays of user ids, together ``users``.
    """
    order = np.random.default_rng(seed).permutation(np.asarray(users))
    first, second = int(len(order) * shares[0]), int(len(order) * (shares[0] + shares[1]))
    return order[:first], order[first:second], order[second:]


def cut_point(length: int, share: float = INPUT_SHARE) -> int:
    """How many of a held-out user's items are input: ``int(share * length)``, kept in [1, length - 1].

    Args:
        length: the user's number of items (at least 2).
        share: the input share.

    Returns:
        int: the input length; the remaining ``length - k`` items are targets.
    """
    return min(max(int(share * length), 1), length - 1)


def diversity(top_ids: np.ndarray, category: np.ndarray) -> np.ndarray:
    """ComiRec's Diversity@N: the share of pairs of a list's items whose categories differ.

    Args:
        top_ids: [B, N] item ids (N >= 2).
        category: [n_items] category id of each item.

    Returns:
        np.ndarray: [B] per list.
    """
    cats = category[np.asarray(top_ids)]  # [B, N]
    n = cats.shape[1]
    differ = (cats[:, :, None] != cats[:, None, :]).sum((1, 2)) / 2  # each unordered pair once
    return differ / (n * (n - 1) / 2)


def protocol_rows(uid: np.ndarray, target: np.ndarray, seed: int):
    """Which prefix rows train, and which rows and targets stand for each held-out user.

    Args:
        uid: [R] user of each prefix row; a user's rows are in time order, row ``r`` of a user predicting
            the user's item ``r + 1`` (RecBole's sequential rows).
        target: [R] the item each row predicts.
        seed: the user split's seed.

    Returns:
        (train_rows, valid, test): ``train_rows`` [R_t] the training users' rows, by user then time;
        ``valid`` and ``test`` are ``(rows, targets)``: per held-out user the row whose history is the first
        ``cut_point(n)`` items (history truncation by MAX_ITEM_LIST_LENGTH aside) and a [U, T] 0-padded array of
        the rest.
    """
    uid, target = np.asarray(uid), np.asarray(target)
    order = np.argsort(uid, kind="stable")
    users, starts, counts = np.unique(uid[order], return_index=True, return_counts=True)
    train_u, valid_u, test_u = split_users(users, seed)
    train_rows = order[np.isin(uid[order], train_u)]  # by user, then time, whatever the rows' order

    def held_out(chosen: np.ndarray):
        pick = np.searchsorted(users, np.sort(chosen))
        rows, targets = [], []
        for s, c in zip(starts[pick], counts[pick], strict=True):
            n = int(c) + 1  # a user's rows predict items 2..n
            k = cut_point(n)
            mine = order[s : s + c]  # this user's rows in time order
            rows.append(mine[k - 1])  # predicts item k + 1: its history is items 1..k
            targets.append(target[mine[k - 1 :]])
        width = max((len(t) for t in targets), default=1)
        padded = np.zeros((len(targets), width), dtype=np.int64)
        for i, t in enumerate(targets):
            padded[i, : len(t)] = t
        return np.asarray(rows, dtype=np.int64), padded

    return train_rows, held_out(valid_u), held_out(test_u)


class UserSplitDataset(SequentialDataset):
    """A sequential dataset whose ``build()`` follows ``eval_protocol: comirec`` (see the module docstring)."""

    def build(self):
        if (self.config["eval_protocol"] or "leave_one_out") != "comirec":
            return super().build()
        self._change_feat_format()  # RecBole's prefix rows
        inter = self.inter_feat
        train_rows, valid, test = protocol_rows(
            inter[self.uid_field].numpy(), inter[self.iid_field].numpy(), self.config["seed"]
        )
        if len(valid[0]) == 0 or len(test[0]) == 0:
            raise ConfigError(
                f"eval_protocol comirec: dataset '{self.dataset_name}' has too few users for an 8:1:1 user split"
            )
        out = [self.copy(inter[torch.from_numpy(train_rows)])]
        for rows, targets in (valid, test):
            split = inter[torch.from_numpy(rows)]
            split.interaction[TARGETS_FIELD] = torch.from_numpy(targets)
            out.append(self.copy(split))
        return out


def with_user_split(dataset_class: type) -> type:
    """The dataset class a run uses under ``eval_protocol: comirec``.

    Args:
        dataset_class: the model's sequential dataset class (RecBole's ``SequentialDataset`` or a subclass).

    Returns:
        type: a subclass whose ``build()`` splits by user.

    Raises:
        ConfigError: for a non-sequential model's dataset (a held-out user is scored from their input items).
    """
    if not issubclass(dataset_class, SequentialDataset):
        raise ConfigError("eval_protocol comirec scores a held-out user from their first items: sequential models only")
    if dataset_class is SequentialDataset:
        return UserSplitDataset
    return type(f"{dataset_class.__name__}ByUser", (dataset_class, UserSplitDataset), {})


class TargetsEvalDataLoader(FullSortEvalDataLoader):
    """RecBole's full-sort evaluation loader, with every target of a held-out row as a positive."""

    def collate_fn(self, index):
        interaction = self.transform(self._dataset, self._dataset[np.asarray(index)])
        targets = interaction[TARGETS_FIELD]  # [B, T]
        positive_u, column = (targets > 0).nonzero(as_tuple=True)
        return interaction, None, positive_u, targets[positive_u, column]
