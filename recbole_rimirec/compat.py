"""Fixes that let RecBole 1.2.1 run on today's numpy, pandas and torch.

Every fix lives in :func:`apply`, which is idempotent and is called by the plugin's
:class:`~recbole_rimirec.config.Config` and model lookup. Importing this module (or the
package) changes nothing global.

Measured faults (see the project's design notes):

* numpy 2 removed ``np.float_``, ``np.complex_`` and ``np.unicode_``, which RecBole's
  ``Config.compatibility_settings`` reads; defining them again is enough.
* ``recbole/model/sequential_recommender/sine.py`` turns on autograd anomaly detection at
  import time, for every sequential model; it roughly halves training speed.
* pandas 3 changed ``Series.agg(len)`` and chained ``fillna(inplace=True)``; RecBole then loads
  token sequences wrongly and keeps NaNs. The package pins ``pandas<3``; :func:`apply` refuses
  to run on pandas 3 rather than silently change the data.
"""

from __future__ import annotations

import importlib

from recbole_rimirec.errors import ConfigError

_NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}


def _numpy_aliases() -> None:
    import numpy as np

    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))


def _check_pandas() -> None:
    import pandas as pd

    major = int(pd.__version__.split(".")[0])
    if major >= 3:
        raise ConfigError(
            f"pandas {pd.__version__} is installed; RecBole 1.2.1 mis-reads token_seq fields and keeps NaNs on "
            "pandas 3. Install 'pandas<3' (pip install 'pandas<3')."
        )


def _quiet_known_deprecations() -> None:
    import warnings

    # Deprecations inside RecBole 1.2.1 that still work on the pinned stack but print on every
    # run: chained fillna(inplace=True) and Series.agg(len) (pandas 2.x), and
    # torch.cuda.amp.GradScaler (torch 2.x). Each filter matches only that message.
    for message in (
        ".*inplace method.*",
        r"using <built-in function len> in Series\.agg.*",
        r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated.*",
    ):
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


def _anomaly_off() -> None:
    import torch

    # Importing the sequential models runs sine.py's module-level set_detect_anomaly(True);
    # import them first so that switching it off here is final.
    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(False)


def apply() -> None:
    """Applies every stack fix; safe to call any number of times.

    Raises:
        ConfigError: when an installed package cannot be fixed (pandas 3).
    """
    _numpy_aliases()
    _check_pandas()
    _quiet_known_deprecations()
    _anomaly_off()
