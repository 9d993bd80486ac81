import importlib
import subprocess
import sys

import numpy as np
import torch

from recbole_rimirec import compat


def test_apply_is_idempotent_and_restores_numpy_aliases():
    compat.apply()
    compat.apply()
    assert np.float_ is np.float64 and np.unicode_ is np.str_


def test_anomaly_mode_off_after_import_and_building_a_sequential_model(tiny):
    from recbole_rimirec.config import Config
    from recbole_rimirec.data.preparation import create_dataset, data_preparation

    importlib.import_module("recbole.model.sequential_recommender.sine")  # the module that turns it on
    config = Config("SASRec", "tiny", config_dict=tiny)
    train, _, _ = data_preparation(config, create_dataset(config))
    config.model_class(config, train._dataset)
    assert torch.is_anomaly_enabled() is False


def test_importing_the_package_changes_nothing_global():
    code = (
        "import numpy as np, torch, sys\n"
        "before = hasattr(np, 'float_')\n"
        "import recbole_rimirec, recbole_rimirec.config, recbole_rimirec.utils, recbole_rimirec.trainer\n"
        "assert hasattr(np, 'float_') == before, 'numpy changed'\n"
        "assert not torch.is_anomaly_enabled()\n"
        "assert 'recbole.model.sequential_recommender.sine' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_prints_none_of_recboles_known_deprecations(tiny):
    import warnings

    from recbole_rimirec.quick_start import run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run("SASRecAllPos", "tiny", config_dict={**tiny, "epochs": 1})
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert not [m for m in messages if "Series.agg" in m or "GradScaler" in m or "inplace method" in m], messages
