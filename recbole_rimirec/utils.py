"""Model, trainer and dataset lookup: the plugin first, RecBole as the fallback."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from recbole.utils import ModelType

from recbole_rimirec import compat
from recbole_rimirec.errors import ConfigError


def get_model(model_name: str) -> type:
    """Finds a model class by name.

    Args:
        model_name: class name, e.g. ``"RimiRec"`` or ``"SASRec"``.

    Returns:
        type: the plugin's class when ``recbole_rimirec/model/<name>.py`` defines it, else RecBole's.

    Raises:
        ConfigError: when neither the plugin nor RecBole has a model of that name.
    """
    compat.apply()
    module_path = f"recbole_rimirec.model.{model_name.lower()}"
    if importlib.util.find_spec(module_path) is not None:
        module = importlib.import_module(module_path)
        if hasattr(module, model_name):
            return getattr(module, model_name)
    import recbole.model
    from recbole.utils import get_model as recbole_get_model

    # Look for RecBole's file first: importing exlib_recommender needs lightgbm and xgboost.
    if not any(Path(recbole.model.__file__).parent.glob(f"*/{model_name.lower()}.py")):
        raise ConfigError(f"unknown model '{model_name}': not a recbole_rimirec model and not a RecBole model")
    try:
        return recbole_get_model(model_name)
    except ImportError as err:
        raise ConfigError(f"model '{model_name}' needs a package that is not installed: {err}") from None
    except (ValueError, AttributeError):
        raise ConfigError(f"unknown model '{model_name}' (model names are case-sensitive)") from None


def get_trainer(model_type: ModelType, model_name: str, model_class: type | None = None) -> type:
    """Finds the trainer for a model: the model's own, the plugin's, then RecBole's made checkpoint-safe.

    Args:
        model_type: the model's RecBole type.
        model_name: the model's class name.
        model_class: the model class; a ``trainer_class`` attribute on it wins.

    Returns:
        type: a trainer class whose checkpoints load with ``torch.load(..., weights_only=True)``.
    """
    from recbole.trainer import Trainer as RecBoleTrainer
    from recbole.utils import get_trainer as recbole_get_trainer

    from recbole_rimirec import trainer as plugin_trainer

    own = getattr(model_class, "trainer_class", None)
    if own is not None:
        return own
    found = getattr(plugin_trainer, f"{model_name}Trainer", None)
    if found is not None:
        return found
    base = recbole_get_trainer(model_type, model_name)
    if base is RecBoleTrainer:
        return plugin_trainer.Trainer
    return plugin_trainer.make_safe(base)


def get_dataset_class(config) -> type:
    """Picks the dataset class: the model's ``dataset_class`` if it names one, else RecBole's by model type.

    Args:
        config: the run's Config.

    Returns:
        type: a RecBole Dataset subclass.
    """
    own = getattr(config.model_class, "dataset_class", None)
    if own is not None:
        return own
    module = importlib.import_module("recbole.data.dataset")
    if hasattr(module, config["model"] + "Dataset"):
        return getattr(module, config["model"] + "Dataset")
    by_type = {
        ModelType.SEQUENTIAL: "SequentialDataset",
        ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
    }
    return getattr(module, by_type.get(config["MODEL_TYPE"], "Dataset"))
