"""User-facing errors: one line that names the key, file or value to fix."""


class ConfigError(ValueError):
    """A mistake in the user's model name, dataset, config file or config value.

    The runner prints its message as one line and exits non-zero, without a traceback.
    """
