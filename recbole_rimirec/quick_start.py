"""``run(...)``: train and test one model on one dataset, the body of ``run_rimirec.py``.

It does what RecBole's ``run_recbole`` does, through the plugin's Config, lookup, data modes and
safe trainers, and without importing ``recbole.quick_start`` (whose ``ray`` import breaks on
numpy 2).
"""

from __future__ import annotations

import logging
import os
from time import perf_counter

import numpy as np
from recbole.utils import init_logger, init_seed

from recbole_rimirec.checkpoint import plain
from recbole_rimirec.config import Config, check_core_keys, check_metrics, check_types, unknown_keys
from recbole_rimirec.data.loaders import all_positions_batch_targets
from recbole_rimirec.data.preparation import create_dataset, data_preparation, protocol_of, train_mode_of
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.evaluation import hit_record
from recbole_rimirec.trainer import TrainingBudgetExhausted
from recbole_rimirec.utils import get_trainer

# options of the all_positions path a result records (their effective values, defaults included)
ALL_POSITIONS_KEYS = (
    "all_positions_stride",
    "all_positions_group_by_length",
    "all_positions_pack",
    "all_positions_batch_targets",
    "all_positions_splits",
    "all_positions_shift",
)


def all_positions_settings(config, train_data) -> dict:
    """The effective settings of an all-positions run, as recorded in its result.

    Args:
        config: the run's Config.
        train_data: its ``AllPositionsDataLoader``.

    Returns:
        dict: ``ALL_POSITIONS_KEYS`` (``all_positions_batch_targets`` only when it set the batch) and
        ``windows_per_batch``.
    """
    settings = {key: config[key] for key in ALL_POSITIONS_KEYS}
    settings["all_positions_batch_targets"] = all_positions_batch_targets(config)
    return settings | {"windows_per_batch": train_data.step}


def _make_dirs(config) -> None:
    """Creates the folders RecBole writes into before RecBole's own check-then-create does.

    RecBole's ``ensure_dir`` (called by ``init_logger`` for ``./log/<model>`` and by the trainer for
    ``checkpoint_dir``) raises ``FileExistsError`` when another run creates the folder between its
    check and its ``os.makedirs``: two runs started together in a fresh folder crash one of them.

    Args:
        config: the run's Config.
    """
    folders = {"the log folder": os.path.join("log", config["model"]), "checkpoint_dir": config["checkpoint_dir"]}
    for key, folder in folders.items():  # RecBole's LOGROOT is "./log/"
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"{key} {folder} cannot be created: {err.strerror or err}") from None


def _metrics(result) -> dict | None:
    return None if result is None else {k: float(v) for k, v in result.items()}


def time_to_best(epoch_seconds: list[float], epochs_done: int, best_epoch: int | None) -> float | None:
    """Training seconds up to and including the best epoch.

    Args:
        epoch_seconds: the training time of each epoch this run timed; a run resumed from a best
            checkpoint (not a ``-last.pth``) times only the epochs since the resume.
        epochs_done: epochs done in all, counted from the run's first epoch.
        best_epoch: 0-based index of the best epoch in that count, or ``None``.

    Returns:
        float | None: the seconds, or ``None`` when there is no best epoch or it comes before the
        epochs this run timed.
    """
    first = epochs_done - len(epoch_seconds)  # the first epoch this run timed
    if best_epoch is None or best_epoch < first:
        return None
    return sum(epoch_seconds[: best_epoch + 1 - first])


def check_config(config) -> None:
    """The checks that need no data (RecBole's training keys, ``train_mode``, the model's own keys).

    A wrong value then fails before the data is read (minutes on a large data set).

    Args:
        config: the run's Config.

    Raises:
        ConfigError: naming the key; models check their keys in a ``check_config`` classmethod.
    """
    check_types(config)
    check_core_keys(config)
    check_metrics(config)
    if config["resume_from"] and not os.path.isfile(config["resume_from"]):
        raise ConfigError(f"resume_from {config['resume_from']}: no such file")
    train_mode_of(config)
    model_check = getattr(config.model_class, "check_config", None)
    if model_check is not None:
        model_check(config)


def prepare(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
    """Everything ``run`` does before training: the checked config, the logger, the splits, the model's trainer.

    Args:
        model: model name (plugin first, then RecBole) or class.
        dataset: dataset name.
        config_file_list: YAML files.
        config_dict: overrides above the files.
        cmd_args: ``--key=value`` overrides above everything.

    Returns:
        tuple: (config, trainer with ``item_category`` set, (train, valid, test) loaders, seconds the data took).
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_args)
    check_config(config)
    init_seed(config["seed"], config["reproducibility"])
    _make_dirs(config)
    init_logger(config)
    logger = logging.getLogger()
    logger.info(config)
    unknown = unknown_keys(config)
    if unknown:
        defined_by = f"RecBole, the plugin nor {config['model']}"
        logger.warning(f"config keys that neither {defined_by} defines (misspelt?): {', '.join(unknown)}")

    start = perf_counter()
    data = create_dataset(config)
    logger.info(data)
    loaders = data_preparation(config, data)
    data_s = perf_counter() - start

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = config.model_class(config, loaders[0]._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config.model_class)(config, net)
    trainer.item_category = item_categories(config, loaders[0]._dataset)
    return config, trainer, loaders, data_s


def run(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    cmd_args=None,
    saved: bool = True,
) -> dict:
    """Trains a model, evaluates its best checkpoint on the test split, and reports.

    Args:
        model: model name (plugin first, then RecBole) or class.
        dataset: dataset name; ``ml-100k`` is read from the copy inside the recbole wheel.
        config_file_list: YAML files.
        config_dict: overrides above the files.
        cmd_args: ``--key=value`` overrides above everything.
        saved: keep the best checkpoint and test it (else the last weights are tested).

    Returns:
        dict: ``model``, ``dataset``, ``seed``, ``train_mode`` (with ``all_positions``: the effective
        ``all_positions_stride``, ``all_positions_group_by_length``, ``all_positions_pack``,
        ``all_positions_batch_targets`` and ``windows_per_batch``),
        ``best_valid_result``, ``test_result``, ``timings``
        (``data_s``, ``train_s``, ``epochs``, ``epoch_s``, ``eval_s``, ``best_epoch``, ``time_to_best_s``:
        training seconds up to the best validation; after a resume from a best checkpoint, ``epochs``,
        ``epoch_s`` and the time cover the epochs since the resume, ``valid_curve``: the valid score after each
        validation with the epochs and training seconds behind it, every valid metric as ``valid_result``, and
        ``tree_rebuild`` where RimiRec's tree was rebuilt after it), ``checkpoint``, ``last_checkpoint``,
        ``time_capped``, ``test_ranks`` (per test user, the target's 0-based rank, -1 when past the largest topk;
        under ``eval_protocol: comirec`` the first hit's), ``test_hits`` (``eval_protocol: comirec`` only: per
        test user every hit's 0-based rank and the number of targets, ``evaluation.hit_record``),
        plus whatever the model reports through an ``extra_results()`` method on its trainer.
    """
    config, trainer, (train_data, valid_data, test_data), data_s = prepare(
        model, dataset, config_file_list, config_dict, cmd_args
    )
    logger = logging.getLogger()
    if config["resume_from"]:
        trainer.resume_checkpoint(config["resume_from"])

    start = perf_counter()
    capped = False
    try:
        _, best_valid_result = trainer.fit(train_data, valid_data, saved=saved, show_progress=config["show_progress"])
    except TrainingBudgetExhausted as stop:
        logger.warning(f"training stopped: {stop}")
        capped, best_valid_result = True, trainer.best_valid_result
    train_s = perf_counter() - start + trainer.elapsed_before  # a resumed run counts its earlier processes

    start = perf_counter()
    load_best = saved and os.path.isfile(trainer.saved_model_file)
    test_result = trainer.evaluate(test_data, load_best_model=load_best, show_progress=config["show_progress"])
    eval_s = perf_counter() - start

    # Epochs run since the best validation (RecBole's counter, one validation per eval_step epochs).
    best_epoch = trainer.epochs_done - 1 - trainer.cur_step * config["eval_step"] if best_valid_result else None
    logger.info(f"best valid : {best_valid_result}")
    logger.info(f"test result: {test_result}")
    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "train_mode": config["train_mode"] or "prefixes",
        **(all_positions_settings(config, train_data) if config["train_mode"] == "all_positions" else {}),
        "best_valid_result": _metrics(best_valid_result),
        "test_result": _metrics(test_result),
        "timings": {
            "data_s": data_s,
            "train_s": train_s,
            "epochs": len(trainer.epoch_seconds),
            "epoch_s": list(trainer.epoch_seconds),
            "eval_s": eval_s,
            "best_epoch": best_epoch,
            "time_to_best_s": time_to_best(trainer.epoch_seconds, trainer.epochs_done, best_epoch),
            "valid_curve": list(trainer.valid_curve),
        },
        "checkpoint": trainer.saved_model_file if saved else None,
        "last_checkpoint": trainer.last_checkpoint_file if saved else None,
        "time_capped": capped,
    }
    if trainer.last_ranks is not None:  # per test user: 0-based rank of the target, -1 past max topk
        result["test_ranks"] = trainer.last_ranks.tolist()
    if trainer.last_topk is not None and protocol_of(config) == "comirec":  # several targets: every hit's rank
        result["test_hits"] = hit_record(trainer.last_topk)
    extra = getattr(trainer, "extra_results", None)
    if extra is not None:
        result.update(plain(extra()))
    return result


def item_categories(config, dataset):
    """Each item's category for Diversity@N, from ``diversity_field``, or ``None`` when it is not set.

    Args:
        config: the run's Config.
        dataset: the built train split.

    Returns:
        np.ndarray | None: [n_items] category ids (a token-sequence field: each item's commonest token).

    Raises:
        ConfigError: when the field is not an item token field the run loaded.
    """
    field = config["diversity_field"]
    if not field:
        return None
    from recbole_rimirec.explain import feature_fields
    from recbole_rimirec.tree_report import category_labels

    if field not in feature_fields(dataset):
        loaded = ", ".join(feature_fields(dataset)) or "none"
        raise ConfigError(f"diversity_field '{field}' is not an item token field of this run (loaded: {loaded})")
    return category_labels(dataset, field)


def saved_config(checkpoint: str, overrides: dict | None = None, cmd_args: list[str] | None = None) -> Config:
    """The Config a saved run was trained with (its model, data set and external settings), plus overrides.

    Args:
        checkpoint: a checkpoint written by the plugin's trainer.
        overrides: config keys to change.
        cmd_args: ``--key=value`` strings, read as the command line's (they win over ``overrides``).

    Returns:
        Config: not yet checked.
    """
    from recbole_rimirec.checkpoint import load_checkpoint
    from recbole_rimirec.distributed import DIST_KEYS

    state = load_checkpoint(checkpoint)
    saved = state["config"]
    settings = {k: v for k, v in state.get("external_config", {}).items() if k not in DIST_KEYS}
    settings.update(overrides or {})
    settings.pop("model", None)
    settings.pop("dataset", None)
    return Config(saved["model"], saved["dataset"], config_dict=settings, cmd_args=cmd_args)


def load_saved(
    checkpoint: str, overrides: dict | None = None, cmd_args: list[str] | None = None, load_weights: bool = True
) -> dict:
    """Rebuilds a saved run: its Config, data split, model and trainer, without retraining.

    The checkpoint's model, dataset and the settings it was trained with (RecBole's external config
    layer) rebuild the same split; ``overrides`` and ``cmd_args`` may change keys (checked before
    the data is read). Loading reads plain data only (``weights_only=True``).

    Args:
        checkpoint: a checkpoint written by the plugin's trainer.
        overrides: config keys to change.
        cmd_args: ``--key=value`` strings, read as the command line's (they win over ``overrides``).
        load_weights: load the checkpoint's weights into the model (else the trainer does it later).

    Returns:
        dict: ``config``, ``dataset`` (the whole data set), ``splits`` (train, valid, test loaders),
        ``model`` and ``trainer``.
    """
    config = saved_config(checkpoint, overrides, cmd_args)
    check_config(config)  # the overrides too, before the data is read
    init_seed(config["seed"], config["reproducibility"])
    _make_dirs(config)
    init_logger(config)
    data = create_dataset(config)
    splits = data_preparation(config, data)
    net = config.model_class(config, splits[0]._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config.model_class)(config, net)
    trainer.item_category = item_categories(config, splits[0]._dataset)
    if load_weights:
        trainer.load_weights(checkpoint)
    return {"config": config, "dataset": data, "splits": splits, "model": net, "trainer": trainer}


def evaluate_saved(
    checkpoint: str, overrides: dict | None = None, split: str = "test", cmd_args: list[str] | None = None
) -> dict:
    """Re-evaluates a saved run without retraining.

    The checkpoint's model, dataset and the settings it was trained with (RecBole's external
    config layer) rebuild the same data split and model; ``overrides`` may change evaluation keys
    (e.g. ``select_budget``, ``retrieval``). Loading reads plain data only (``weights_only=True``).

    Args:
        checkpoint: a checkpoint written by the plugin's trainer.
        overrides: config keys to change.
        split: ``test`` or ``valid``.
        cmd_args: ``--key=value`` strings, read as the command line's (they win over ``overrides``).

    Returns:
        dict: ``result`` (metrics), ``<split>_ranks`` (per user, the target's 0-based rank, -1 past the
        largest topk, as ``run``'s ``test_ranks``) and the trainer's extra results.
    """
    saved = load_saved(checkpoint, overrides, cmd_args, load_weights=False)
    trainer, (_, valid_data, test_data) = saved["trainer"], saved["splits"]
    result = trainer.evaluate(test_data if split == "test" else valid_data, load_best_model=True, model_file=checkpoint)
    out = {"result": _metrics(result)}
    if trainer.last_ranks is not None:  # as run()'s test_ranks: a saved run can enter a paired bootstrap
        out[f"{split}_ranks"] = trainer.last_ranks.tolist()
    if trainer.last_topk is not None and protocol_of(saved["config"]) == "comirec":
        out[f"{split}_hits"] = hit_record(trainer.last_topk)
    extra = getattr(trainer, "extra_results", None)
    if extra is not None:
        out.update(plain(extra()))
    return out


def export_item_vectors(checkpoint: str, out: str) -> int:
    """Writes a saved run's item embeddings, keyed by raw item token, for ``tree_vectors: pretrained``.

    A RimiRec tree can then be built from what another model learned (SASRecAllPos, or an earlier
    RimiRec run) instead of from co-occurrence counts.

    Args:
        checkpoint: a checkpoint written by the plugin's trainer, of a model with ``item_embedding``.
        out: the ``.npz`` file to write (arrays ``tokens`` and ``vectors``).

    Returns:
        int: the number of items written.

    Raises:
        ConfigError: when the checkpoint has no item embedding or its rows do not match the data set.
    """
    from recbole_rimirec.checkpoint import load_checkpoint

    weight = load_checkpoint(checkpoint)["state_dict"].get("item_embedding.weight")
    if weight is None:
        raise ConfigError(f"{checkpoint}: the model has no item_embedding to export")
    config = saved_config(checkpoint)
    tokens = np.asarray(create_dataset(config).field2id_token[config["ITEM_ID_FIELD"]]).astype(str)
    if len(tokens) != len(weight):
        raise ConfigError(f"{checkpoint}: {len(weight)} item rows, but the data set has {len(tokens)} item ids")
    if not out.endswith(".npz"):
        raise ConfigError(f"--out {out}: item vectors are written as .npz")
    np.savez(out, tokens=tokens[1:], vectors=weight[1:].float().cpu().numpy())  # row 0 is padding
    return len(tokens) - 1
