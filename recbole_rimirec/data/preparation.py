"""Dataset construction and train/valid/test loaders, with the plugin's training modes.

Unlike RecBole's ``create_dataset``/``data_preparation``, nothing here unpickles a cached
dataset or loader from ``checkpoint_dir``.
"""

from __future__ import annotations

import os

from recbole.data.dataset import SequentialDataset
from recbole.data.utils import create_samplers, get_dataloader
from recbole.utils import ModelType

from recbole_rimirec.data.loaders import (
    AllPositionsDataLoader,
    RandomCutDataLoader,
    all_positions_batch_targets,
    all_positions_splits,
    all_positions_stride,
)
from recbole_rimirec.data.prefix_rows import with_fast_prefix_rows
from recbole_rimirec.data.protocol import PROTOCOLS, TargetsEvalDataLoader, with_user_split
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.utils import get_dataset_class

TRAIN_MODES = ("prefixes", "all_positions", "random_cut")


def check_dataset_files(config) -> None:
    """Checks that the dataset's atomic ``.inter`` file(s) exist before RecBole reads them.

    Args:
        config: the run's Config.

    Raises:
        ConfigError: naming the missing file.
    """
    name, folder = config["dataset"], config["data_path"]
    suffixes = config["benchmark_filename"] or [None]
    if not os.path.isfile(os.path.join(folder, f"{name}.inter")) and suffixes == [None]:
        download_known(name, folder)
    for suffix in suffixes:
        file = os.path.join(folder, f"{name}.{suffix}.inter" if suffix else f"{name}.inter")
        if not os.path.isfile(file):
            raise ConfigError(
                f"dataset '{name}': {file} not found (give --data_path=<folder holding {name}/> or fix the name)"
            )


def known_url(name: str) -> str | None:
    """The download address RecBole lists for a data set name (its ``properties/dataset/url.yaml``), or ``None``."""
    import recbole
    import yaml

    with open(os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")) as f:
        return (yaml.safe_load(f) or {}).get(name)


def download_known(name: str, folder: str) -> None:
    """Downloads a data set RecBole knows (ml-1m, ...) into ``folder`` as atomic files.

    RecBole 1.2.1 downloads a missing data set itself only inside a process group (its download
    waits on a ``torch.distributed`` barrier), so the plugin does it here. Names RecBole does not
    list are left alone (the caller reports the missing file).

    Args:
        name: the data set name.
        folder: the folder its atomic files belong in (``<data_path>/<name>``).

    Raises:
        ConfigError: when the download fails (offline, say), in one line.
    """
    url = known_url(name)
    if url is None:
        return
    from recbole.utils.url import extract_zip, rename_atomic_files

    try:
        path = download_url(url, folder)
        extract_zip(path, folder)
        os.unlink(path)
        rename_atomic_files(folder, os.path.splitext(os.path.basename(path))[0], name)
    except (OSError, RuntimeError, ValueError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(
            f"dataset '{name}' is not in {folder} and could not be downloaded from {url}: {reason}"
        ) from None


def download_url(url: str, folder: str) -> str:
    """RecBole's download of one file into a folder (a seam for tests); returns the file's path."""
    from recbole.utils.url import download_url as recbole_download

    return recbole_download(url, folder)


def create_dataset(config):
    """Builds the dataset object for the run's model.

    Args:
        config: the run's Config.

    Returns:
        Dataset: the model's dataset class, loaded and filtered (not yet split).
    """
    check_dataset_files(config)
    name = config["dataset"]
    dataset_class = with_fast_prefix_rows(get_dataset_class(config))
    if protocol_of(config) == "comirec":
        dataset_class = with_user_split(dataset_class)
    try:
        dataset = dataset_class(config)
    except ValueError as err:  # RecBole's loading and filtering raise ValueError for bad data
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "feat is empty" in text:
            raise ConfigError(f"dataset '{name}' has no interactions left after loading and filtering") from None
        raise ConfigError(f"dataset '{name}' cannot be loaded: {text}") from None
    if len(dataset.inter_feat) == 0:
        raise ConfigError(f"dataset '{name}' has no interactions left after loading and filtering")
    ordered = isinstance(dataset, SequentialDataset) or config["eval_args"]["order"] == "TO"
    if ordered and (dataset.time_field is None or dataset.time_field not in dataset.inter_feat):
        raise ConfigError(
            f"dataset '{name}' has no time column '{dataset.time_field}' (TIME_FIELD), which orders each user's "
            f"interactions for sequential models and the split by time: add it to {name}.inter or set TIME_FIELD"
        )
    library = dataset.item_num - 1
    if max(config["topk"]) > library:
        raise ConfigError(f"topk {max(config['topk'])} is larger than the {library} items of dataset '{name}'")
    return dataset


def protocol_of(config) -> str:
    """Returns the validated ``eval_protocol`` of a run.

    Args:
        config: the run's Config.

    Returns:
        str: ``leave_one_out`` or ``comirec``.
    """
    protocol = config["eval_protocol"] or "leave_one_out"
    if protocol not in PROTOCOLS:
        raise ConfigError(f"eval_protocol '{protocol}' is not one of {', '.join(PROTOCOLS)}")
    mode = config["eval_args"]["mode"]
    if protocol == "comirec" and any(m != "full" for m in (mode.values() if isinstance(mode, dict) else [mode])):
        raise ConfigError("eval_protocol comirec ranks the whole library: it needs eval_args mode full")
    return protocol


def train_mode_of(config) -> str:
    """Returns the validated ``train_mode`` of a run.

    Args:
        config: the run's Config.

    Returns:
        str: one of ``prefixes``, ``all_positions``, ``random_cut``.
    """
    mode = config["train_mode"] or "prefixes"
    if mode not in TRAIN_MODES:
        raise ConfigError(f"train_mode '{mode}' is not one of {', '.join(TRAIN_MODES)}")
    model_class = config.model_class
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        allowed = ("prefixes",)
    else:
        allowed = getattr(model_class, "train_modes", ("prefixes", "random_cut"))
    if mode not in allowed:
        raise ConfigError(f"train_mode '{mode}' is not supported by {config['model']} (it takes {', '.join(allowed)})")
    if mode == "all_positions" and config["train_neg_sample_args"]["distribution"] != "none":
        raise ConfigError("train_mode 'all_positions' needs train_neg_sample_args: ~ (the model samples its own)")
    if mode == "all_positions":
        all_positions_stride(config)
        all_positions_batch_targets(config)
        all_positions_splits(config)
    return mode


def data_preparation(config, dataset):
    """Splits the dataset and makes the train, valid and test loaders.

    Args:
        config: the run's Config.
        dataset: from :func:`create_dataset`.

    Returns:
        (train_data, valid_data, test_data): RecBole loaders; the train loader follows ``train_mode``.
    """
    mode = train_mode_of(config)
    built = dataset.build()
    train_ds, valid_ds, test_ds = built
    if len(train_ds) == 0:
        raise ConfigError(f"dataset '{config['dataset']}' has no training interactions after the split")
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built)
    loader = {
        "prefixes": get_dataloader(config, "train"),
        "all_positions": AllPositionsDataLoader,
        "random_cut": RandomCutDataLoader,
    }[mode]
    train_data = loader(config, train_ds, train_sampler, shuffle=config["shuffle"])
    by_user = protocol_of(config) == "comirec"  # held-out users with several targets each
    valid_loader = TargetsEvalDataLoader if by_user else get_dataloader(config, "valid")
    test_loader = TargetsEvalDataLoader if by_user else get_dataloader(config, "test")
    valid_data = valid_loader(config, valid_ds, valid_sampler, shuffle=False)
    test_data = test_loader(config, test_ds, test_sampler, shuffle=False)
    return train_data, valid_data, test_data
