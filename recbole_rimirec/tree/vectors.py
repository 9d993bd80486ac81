"""Item vectors for the tree, from the training split only.

Default: collaborative vectors, a truncated SVD of the PPMI item-item co-occurrence matrix,
where two items co-occur once per user whose training sequence holds both (never once per
RecBole prefix row). Alternatives: a pretrained file keyed by raw item token, or the items'
token features (TF-IDF + SVD), alone or beside the co-occurrence vectors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recbole_rimirec.errors import ConfigError


def cooccurrence_window(lengths: np.ndarray, max_pairs: int | None) -> int | None:
    """The widest window whose co-occurring pairs fit ``max_pairs``, or ``None`` when whole sequences fit.

    Whole sequences give each user len x (len - 1) ordered pairs; a window of w positions gives
    2 x sum over lags d <= w of (len - d) per user.

    Args:
        lengths: [U] training sequence lengths.
        max_pairs: the most ordered pairs to count (``None``: no limit).

    Returns:
        int | None: w >= 1, or ``None`` for whole sequences.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    if max_pairs is None or float((lengths * (lengths - 1)).sum()) <= max_pairs:
        return None
    window, pairs = 0, 0.0
    while window + 1 < lengths.max(initial=0):
        more = 2.0 * np.maximum(lengths - (window + 1), 0).sum()
        if window >= 1 and pairs + more > max_pairs:
            break
        window, pairs = window + 1, pairs + more
    return max(window, 1)


def cooccurrence(flat: np.ndarray, offsets: np.ndarray, n_items: int, max_pairs: int | None = None) -> sp.csr_matrix:
    """The item-item co-occurrence counts of users' training sequences, zero diagonal.

    Where every user's whole sequence fits ``max_pairs`` ordered pairs, two items co-occur once
    per user whose sequence holds both. Beyond it (libraries of millions of interactions, where the
    pairs grow with the square of the sequence lengths), only items at most w positions apart
    count, w the widest window that fits (:func:`cooccurrence_window`), once per such occurrence.

    Args:
        flat: concatenated training sequences (item ids >= 1).
        offsets: [U + 1] sequence boundaries.
        n_items: item id space size (row 0 is padding).
        max_pairs: the most ordered pairs to count (``None``: whole sequences, whatever their size).

    Returns:
        sp.csr_matrix: [n_items, n_items] symmetric counts.
    """
    flat, offsets = np.asarray(flat), np.asarray(offsets)
    window = cooccurrence_window(np.diff(offsets), max_pairs)
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))  # [N] user of each position
    if window is None:
        x = sp.coo_matrix((np.ones(len(flat)), (users, flat)), shape=(len(offsets) - 1, n_items)).tocsr()
        x.data[:] = 1.0  # once per user, however often the user repeats the item (tocsr summed duplicates)
        cooc = (x.T @ x).tocsr()  # [n_items, n_items] users holding both
        cooc.setdiag(0)
        cooc.eliminate_zeros()
        return cooc
    # [P] each pair once, an item with itself left out (the zero diagonal); 32-bit ids and counts (exact
    # below 2**24 per pair): at 50M pairs the arrays are a few hundred MB, not GBs
    ids, first, second = flat.astype(np.int32), [], []
    for lag in range(1, window + 1):
        keep = (users[lag:] == users[:-lag]) & (ids[lag:] != ids[:-lag])  # [N - lag] one user, two items
        first.append(ids[:-lag][keep])
        second.append(ids[lag:][keep])
    a, b = np.concatenate(first), np.concatenate(second)
    del first, second
    once = sp.coo_matrix((np.ones(len(a), dtype=np.float32), (a, b)), shape=(n_items, n_items)).tocsr()
    del a, b
    return (once + once.T).tocsr().astype(np.float64)  # both orders; tocsr summed repeats


def ppmi_svd_vectors(
    flat: np.ndarray, offsets: np.ndarray, n_items: int, dim: int, seed: int = 0, max_pairs: int | None = None
) -> np.ndarray:
    """Collaborative item vectors from users' training sequences.

    Args:
        flat: concatenated training sequences (item ids >= 1).
        offsets: [U + 1] sequence boundaries.
        n_items: item id space size (row 0 is padding).
        dim: vector size (clipped to what the data supports).
        seed: seed of the SVD's start vector.
        max_pairs: bounds the co-occurrence pairs counted (:func:`cooccurrence`).

    Returns:
        np.ndarray: [n_items, dim] float32, L2-normalised; rows of items without training
        interactions (and row 0) are zero.
    """
    cooc = cooccurrence(flat, offsets, n_items, max_pairs)
    row = np.asarray(cooc.sum(axis=1)).ravel()
    total = row.sum()
    vectors = np.zeros((n_items, dim), dtype=np.float32)
    if total == 0:
        return vectors
    # PMI in place, a slice of the entries at a time (at 10^8 entries, whole-array temporaries take GBs)
    cooc.sort_indices()
    ppmi, step = cooc, 1 << 22
    owner = np.repeat(np.arange(ppmi.shape[0], dtype=np.int32), np.diff(ppmi.indptr))  # [nnz] row of each entry
    for lo in range(0, ppmi.nnz, step):
        part = slice(lo, lo + step)
        ppmi.data[part] = np.log(ppmi.data[part] * total / (row[owner[part]] * row[ppmi.indices[part]]))
    del owner
    ppmi.data[ppmi.data < 0] = 0.0
    ppmi.eliminate_zeros()  # positive PMI only
    k = min(dim, min(ppmi.shape) - 1, max(1, ppmi.nnz - 1))
    if ppmi.nnz == 0 or k < 1:
        return vectors
    rng = np.random.default_rng(seed)
    u, s, _ = svds(ppmi, k=k, v0=rng.standard_normal(min(ppmi.shape)))
    emb = u * np.sqrt(s)[None, :]
    vectors[:, :k] = emb.astype(np.float32)
    vectors[np.diff(ppmi.indptr) == 0] = 0  # no co-occurrence: exactly zero, not SVD round-off
    return normalize_rows(vectors)


def token_feature_vectors(columns: list[np.ndarray], n_items: int, dim: int, seed: int = 0) -> np.ndarray:
    """Item vectors from categorical item features: TF-IDF over the items' tokens, then SVD.

    Args:
        columns: one [n_items, w] int array per feature field (RecBole's remapped token ids by
            item id; 0 is padding; ``token`` fields have w = 1).
        n_items: item id space size.
        dim: vector size (clipped to what the data supports).
        seed: seed of the SVD's start vector.

    Returns:
        np.ndarray: [n_items, dim] float32, L2-normalised; items without tokens get zero rows.
    """
    rows, cols, base = [], [], 0
    for col in columns:
        col = np.asarray(col).reshape(n_items, -1)
        r, c = np.nonzero(col)
        rows.append(r)
        cols.append(base + col[r, c])
        base += int(col.max(initial=0)) + 1
    r, c = np.concatenate(rows), np.concatenate(cols)
    keep = r > 0  # the padding item has no features
    x = sp.csr_matrix((np.ones(keep.sum()), (r[keep], c[keep])), shape=(n_items, max(base, 1)))
    x.data[:] = 1.0  # a token counts once per item
    df = np.asarray((x > 0).sum(axis=0)).ravel()
    idf = np.log((n_items - 1) / np.maximum(df, 1))
    x = (x @ sp.diags(idf)).tocsr()
    x.eliminate_zeros()
    vectors = np.zeros((n_items, dim), dtype=np.float32)
    k = min(dim, min(x.shape) - 1)
    if x.nnz == 0 or k < 1:
        return vectors
    rng = np.random.default_rng(seed)
    u, s, _ = svds(x, k=k, v0=rng.standard_normal(min(x.shape)))
    vectors[:, :k] = (u * s[None, :]).astype(np.float32)
    vectors[np.diff(x.indptr) == 0] = 0  # no tokens: exactly zero, not SVD round-off
    return normalize_rows(vectors)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalises rows; zero rows stay zero.

    Args:
        vectors: [n, d].

    Returns:
        np.ndarray: [n, d] float32.
    """
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norm > 0, vectors / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def checkpoint_vectors(path: str, n_items: int, dataset_name: str | None) -> np.ndarray:
    """Item embeddings of a plugin checkpoint trained on the same data set, rows by item id.

    Args:
        path: a ``.pth`` written by the plugin's trainer (its model has ``item_embedding``).
        n_items: the data set's item id space.
        dataset_name: the data set being built (checked against the checkpoint's).

    Returns:
        np.ndarray: [n_items, d] float64.

    Raises:
        ConfigError: for another data set, another item count, or no item embedding.
    """
    from recbole_rimirec.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(path)
    except Exception as err:  # a missing or foreign file: one line
        raise ConfigError(f"tree_vectors_file {path} cannot be read as a checkpoint: {err}") from None
    trained_on = state.get("config", {}).get("dataset")
    if dataset_name is not None and trained_on != dataset_name:
        raise ConfigError(f"tree_vectors_file {path} was trained on '{trained_on}', not '{dataset_name}'")
    weight = state["state_dict"].get("item_embedding.weight")
    if weight is None:
        raise ConfigError(f"tree_vectors_file {path}: the model has no item_embedding")
    if len(weight) != n_items:
        raise ConfigError(f"tree_vectors_file {path} holds {len(weight)} items, the data set {n_items}")
    return weight.double().numpy()


def pretrained_vectors(path: str, tokens: np.ndarray, dataset_name: str | None = None) -> np.ndarray:
    """Reads item vectors keyed by raw item token, or a checkpoint's item embeddings.

    The file is a tab-separated text file: ``token<TAB>v1 v2 ... vd`` per line, a ``.npz`` with
    arrays ``tokens`` (str) and ``vectors`` ([n, d]), or a plugin checkpoint (``.pth``) of a model
    trained on the same data set with the same filtering (its rows are RecBole's item ids).

    Args:
        path: the file.
        tokens: [n_items] RecBole's raw tokens by remapped id (entry 0 is padding).
        dataset_name: the data set being built (a checkpoint must have been trained on it).

    Returns:
        np.ndarray: [n_items, d] float32, L2-normalised; items absent from the file get zero rows.

    Raises:
        ConfigError: for a missing file, ragged or non-finite vectors, or no token in common.
    """
    if path.endswith(".pth"):
        vectors = checkpoint_vectors(path, len(tokens), dataset_name).astype(np.float32)
        vectors[0] = 0.0
        return normalize_rows(vectors)
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                keys, values = data["tokens"].astype(str), data["vectors"].astype(np.float64)
        else:
            keys, rows = [], []
            with open(path, encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    token, _, rest = line.rstrip("\n").partition("\t")
                    keys.append(token)
                    rows.append(np.array(rest.split(), dtype=np.float64))
                    if len(rows[-1]) != len(rows[0]):
                        raise ConfigError(
                            f"tree_vectors_file {path}: line {line_no} has {len(rows[-1])} values, "
                            f"line 1 has {len(rows[0])}"
                        )
            keys, values = np.array(keys), np.stack(rows) if rows else np.zeros((0, 0))
    except (OSError, KeyError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"tree_vectors_file {path} cannot be read: {err}") from None
    if not np.isfinite(values).all():
        raise ConfigError(f"tree_vectors_file {path} holds NaN or infinite values")
    index = {t: i for i, t in enumerate(keys)}
    found = np.array([index.get(str(t), -1) for t in tokens])
    found[0] = -1
    if (found >= 0).sum() == 0:
        raise ConfigError(f"tree_vectors_file {path} has no token in common with the dataset's items")
    vectors = np.zeros((len(tokens), values.shape[1]), dtype=np.float32)
    vectors[found >= 0] = values[found[found >= 0]]
    return normalize_rows(vectors)
