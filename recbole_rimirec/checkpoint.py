"""Plain-data checkpoints: what the plugin saves, and loading without unpickling code.

RecBole 1.2.1 pickles its Config into every checkpoint and reloads it with ``torch.load``'s old
default; torch >= 2.6 loads weights only, so RecBole cannot read its own checkpoints. The plugin
writes plain data (tensors, numbers, strings, lists, dicts) and always loads with
``weights_only=True``; there is no global switch that re-enables pickle loading.
"""

from __future__ import annotations

import enum
import os
import zipfile

import numpy as np
import torch

from recbole_rimirec.errors import ConfigError


def plain(value):
    """Converts a config value to JSON-like plain data (str, int, float, bool, None, list, dict).

    Args:
        value: any config value (enums, devices, numpy scalars, tuples, sets, nested containers).

    Returns:
        The value as plain data; objects without a plain form become their ``str``.
    """
    if isinstance(value, np.generic):  # before the builtins: np.float64 is a float subclass
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return str(value)


def load_checkpoint(path: str, map_location=None) -> dict:
    """Loads a plugin checkpoint without unpickling code.

    Args:
        path: the checkpoint file.
        map_location: passed to ``torch.load``.

    Returns:
        dict: the checkpoint's plain-data state.

    Raises:
        ConfigError: when the file is missing, truncated, or holds pickled objects.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive (since torch 1.6)
        raise ConfigError(f"checkpoint {path} is not a whole file written by torch.save (truncated, or another format)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError by case
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"checkpoint {path} cannot be loaded safely: {first[:200]}") from None


def rng_state() -> dict:
    """The global random states (torch, numpy, random) as plain data."""
    import random

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(state: dict) -> None:
    """Restores what :func:`rng_state` saved.

    Args:
        state: the dict :func:`rng_state` returned (torch, numpy and python generator states).
    """
    import random

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def loader_state(train_data) -> dict:
    """The train loader's shuffling generator, and the plugin loaders' own sampler, as plain data.

    Args:
        train_data: a RecBole train loader (or a plugin loader with a numpy ``_rng``).

    Returns:
        dict: ``generator`` (torch state) and, for plugin loaders, ``numpy_bit_generator``.
    """
    state = {"generator": train_data.generator.get_state()}
    rng = getattr(train_data, "_rng", None)
    if rng is not None:
        state["numpy_bit_generator"] = plain(rng.bit_generator.state)
    return state


def set_loader_state(train_data, state: dict) -> None:
    """Restores what :func:`loader_state` saved.

    Args:
        train_data: the train loader to restore.
        state: the dict :func:`loader_state` returned.
    """
    train_data.generator.set_state(state["generator"])
    if "numpy_bit_generator" in state:
        train_data._rng.bit_generator.state = state["numpy_bit_generator"]
