"""The plugin's Config: RecBole's defaults < overall.yaml < sequential.yaml < model/<M>.yaml < dataset/<D>.yaml.

The plugin's YAML files sit in ``properties/`` (shipped inside the package as
``recbole_rimirec/properties`` on install). User config files, ``config_dict`` and command-line
``--key=value`` overrides come on top, in RecBole's order (command line > dict > files).
"""

from __future__ import annotations

import os

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_rimirec import compat
from recbole_rimirec.configref import properties_dir
from recbole_rimirec.errors import ConfigError, check_integer


class Config(RecBoleConfig):
    """RecBole's Config with the plugin's model lookup and YAML layers.

    Args:
        model (str | type, optional): model name or class; plugin models are found first.
        dataset (str, optional): dataset name.
        config_file_list (list[str], optional): YAML files, later ones win.
        config_dict (dict, optional): overrides above the files.
        cmd_args (list[str], optional): ``--key=value`` strings, the highest layer. Unlike
            RecBole's Config, ``sys.argv`` is never read implicitly.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
        compat.apply()
        self._cmd_args = list(cmd_args or [])
        try:
            super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        except ConfigError:
            raise
        except (ValueError, NotImplementedError) as err:  # RecBole's own checks (topk, metrics, eval_args, ...)
            message = " ".join(str(err).split())
            raise ConfigError(f"config: {message}") from None

    def _load_config_files(self, file_list):
        merged = {}
        for file in file_list or []:
            if not os.path.isfile(file):
                raise ConfigError(f"config file not found: {file}")
            try:
                with open(file, encoding="utf-8") as f:
                    loaded = yaml.load(f.read(), Loader=self.yaml_loader)
            except yaml.YAMLError as err:
                where = getattr(err, "problem_mark", None)
                line = f" (line {where.line + 1})" if where is not None else ""
                raise ConfigError(f"config file {file} is not valid YAML{line}") from None
            if loaded is None:
                continue
            if not isinstance(loaded, dict):
                raise ConfigError(f"config file {file} must hold a mapping of key: value, not {type(loaded).__name__}")
            merged.update(loaded)
        return merged

    def _load_cmd_line(self):
        parsed = {}
        for arg in self._cmd_args:
            key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
            if not key or not sep:
                raise ConfigError(f"unrecognised argument {arg!r}: overrides are written --key=value")
            if key in parsed and parsed[key] != value:
                raise ConfigError(f"--{key} is given twice with different values")
            parsed[key] = value
        return self._convert_config_dict(parsed)

    def _get_model_and_dataset(self, model, dataset):
        from recbole_rimirec.utils import get_model

        model = model if model is not None else self.external_config_dict.get("model")
        dataset = dataset if dataset is not None else self.external_config_dict.get("dataset")
        if model is None:
            raise ConfigError("no model given: pass -m/--model or set 'model' in a config file")
        if dataset is None:
            raise ConfigError("no dataset given: pass -d/--dataset or set 'dataset' in a config file")
        model_class = get_model(model) if isinstance(model, str) else model
        return model_class.__name__, model_class, dataset

    def _init_device(self):
        """RecBole's device setup, plus multi-process runs on CPU (gloo) as well as GPU (NCCL)."""
        cfg = self.final_config_dict
        if "local_rank" not in cfg:
            return super()._init_device()
        import torch
        import torch.distributed as dist

        cfg["gpu_id"] = (
            str(cfg["gpu_id"]) if not isinstance(cfg["gpu_id"], tuple) else ",".join(map(str, cfg["gpu_id"]))
        )
        use_cuda = bool(cfg["use_gpu"]) and torch.cuda.is_available() and len(cfg["gpu_id"]) > 0
        rank = cfg["local_rank"] + (cfg["offset"] or 0)
        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if use_cuda else "gloo",
                rank=rank,
                world_size=cfg["world_size"],
                init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
            )
        if use_cuda:
            torch.cuda.set_device(cfg["local_rank"])
            cfg["device"] = torch.device("cuda", cfg["local_rank"])
        else:
            cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        props = properties_dir()
        layers = [props / "overall.yaml"]
        if model_class.type == ModelType.SEQUENTIAL:
            layers.append(props / "sequential.yaml")
        layers += [props / "model" / f"{model}.yaml", props / "dataset" / f"{dataset}.yaml"]
        for path in layers:
            if not path.is_file():
                continue
            loaded = self._update_internal_config_dict(str(path)) or {}
            if path.parent.name == "dataset":
                self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]


# RecBole's training keys and common model sizes, with the least value allowed (None: any); a key the
# run does not have (None) is skipped.
INTEGER_KEYS = {
    "epochs": 0,
    "train_batch_size": 1,
    "eval_batch_size": 1,
    "eval_step": 0,
    "stopping_step": 0,
    "MAX_ITEM_LIST_LENGTH": 1,
    "seed": None,
    "hidden_size": 1,
    "embedding_size": 1,
    "inner_size": 1,
    "n_layers": 1,
    "n_heads": 1,
    "interest_num": 1,
    "routing_iterations": 1,
    "neg_sample_factor": 1,
    "tree_vector_dim": 1,
    "tree_max_pairs": 1,
}
NUMBER_KEYS = ("learning_rate", "weight_decay", "time_budget_s")  # >= 0, and learning_rate > 0
AMP_DTYPES = ("bfloat16", "float16")  # amp_dtype: the autocast dtype under RecBole's enable_amp


def check_core_keys(config) -> None:
    """Checks the types and ranges of RecBole's training keys, which RecBole itself takes on trust.

    A string or an out-of-range value in these would otherwise fail deep inside training with a
    traceback (``--epochs=abc``, ``--train_batch_size=0``, ``--MAX_ITEM_LIST_LENGTH=0``).

    Args:
        config: the run's Config.

    Raises:
        ConfigError: naming the key and the value.
    """
    for key, low in INTEGER_KEYS.items():
        if config[key] is not None:
            check_integer(key, config[key], low)
    for key in NUMBER_KEYS:
        value = config[key]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, not {value!r}")
        if value < 0 or (key == "learning_rate" and value == 0):
            raise ConfigError(f"{key} must be {'above' if key == 'learning_rate' else 'at least'} 0, not {value!r}")
    if config["eval_from_lists"]:
        from recbole_rimirec.evaluation import list_metric_problem

        problem = list_metric_problem(config["metrics"] or [])
        if problem:
            raise ConfigError(f"eval_from_lists: {problem}; drop it from metrics or set eval_from_lists: False")
    if config["amp_dtype"] is not None and config["amp_dtype"] not in AMP_DTYPES:
        raise ConfigError(f"amp_dtype '{config['amp_dtype']}' is not one of {', '.join(AMP_DTYPES)}")
    size, heads = config["hidden_size"], config["n_heads"]
    if size is not None and heads is not None and size % heads:
        raise ConfigError(f"hidden_size ({size}) must be a multiple of n_heads ({heads})")


def _type_mismatch(default, value) -> str | None:
    """What ``value`` must be to replace a numeric or boolean ``default``, or ``None`` when it fits."""
    if value is None or default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) or value in (0, 1) else "True or False"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    return None


def check_types(config) -> None:
    """Checks that every key the user sets has the type of its default (numbers and booleans).

    RecBole and the plugin's YAML files give every numeric key a default; a user value of another
    type (``--alpha=abc``, ``embedding_size: 64.5``) would fail deep inside the model with a
    traceback, after the data is read. Keys without a default, and text, list and mapping keys,
    are left to their readers.

    Args:
        config: the run's Config.

    Raises:
        ConfigError: naming the key, the value and the type it must have.
    """
    for key, value in config.external_config_dict.items():
        must = _type_mismatch(config.internal_config_dict.get(key), value)
        if must is not None:
            raise ConfigError(f"{key} must be {must} (like its default), not {value!r}")


def check_metrics(config) -> None:
    """Checks that ``valid_metric`` is one of the metrics the run computes (``metrics`` x ``topk``).

    RecBole checks the metric names when it builds the Config, but a ``valid_metric`` it does not
    compute fails only after the first training epoch.

    Args:
        config: the run's Config.

    Raises:
        ConfigError: naming the metric and those computed.
    """
    valid = config["valid_metric"]
    if valid is None:
        return
    names = [str(m).lower() for m in config["metrics"] or []]
    topk = config["topk"] or []
    name, at, k = str(valid).lower().partition("@")
    if name not in names or (at and (not k.isdigit() or int(k) not in topk)):
        computed = ", ".join(f"{n}@{t}" for n in names for t in topk)
        raise ConfigError(f"valid_metric '{valid}' is not computed (metrics x topk give {computed})")


def unknown_keys(config) -> list[str]:
    """User keys that no layer defines: RecBole's defaults, the plugin's YAML, the model's and dataset's.

    RecBole accepts any key, so a misspelt one (``interest_nums`` for ``interest_num``) silently
    does nothing; the runner logs these as a warning.

    Args:
        config: the run's Config.

    Returns:
        list[str]: the keys, sorted.
    """
    from recbole_rimirec.distributed import DIST_KEYS

    known = set(config.internal_config_dict) | {"model", "dataset", "config_files", *DIST_KEYS}
    return sorted(key for key in config.external_config_dict if key not in known)
