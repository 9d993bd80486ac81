"""recbole_rimirec: RimiRec and the multi-interest baselines (MIND, ComiRec) as a RecBole 1.2.x plugin.

Importing the package changes nothing global; stack fixes run in
:func:`recbole_rimirec.compat.apply`, which the plugin's Config and model lookup call.
"""

__version__ = "0.1.0"
