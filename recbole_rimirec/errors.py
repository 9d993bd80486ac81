"""User-facing errors: one line that names the key, file or value to fix."""

import numbers


class ConfigError(ValueError):
    """A mistake in the user's model name, dataset, config file or config value.

    The runner prints its message as one line and exits non-zero, without a traceback.
    """


def check_integer(key: str, value, low: int | None = None, high: int | None = None):
    """Checks a user's integer setting, naming the key when it is not one or out of range.

    Args:
        key: the config key, as the user writes it.
        value: its value (a bool is not an integer here).
        low: the least value allowed, or ``None``.
        high: the largest value allowed, or ``None``.

    Returns:
        the value, unchanged.

    Raises:
        ConfigError: naming the key, the value and the allowed range.
    """
    if high is not None:
        bound = f"an integer in [{low}, {high}]"
    else:
        bound = "an integer" if low is None else f"an integer of at least {low}"
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{key} must be {bound}, not {value!r}")
    return value


def check_item_budget(key: str, value):
    """Checks a budget of items: a fraction of the library in (0, 1], or a whole number of items above 1.

    Args:
        key: the config key, as the user writes it.
        value: its value.

    Returns:
        the value, unchanged.

    Raises:
        ConfigError: naming the key and the value.
    """
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not value > 0 or (value > 1 and value != int(value)):
        raise ConfigError(f"{key} must be a fraction of the library in (0, 1] or a number of items, not {value!r}")
    return value
