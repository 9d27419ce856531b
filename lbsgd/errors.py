"""The usage error every lbsgd command reports in one line: a field or file and its value.

Serves every part of both papers' runs alike (no TensorFlow here): a config
value, a run directory, a data directory or a checkpoint that cannot be used
is a ConfigError naming the field and what was received, raised before any
rank starts where the check needs no rank.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value, run directory or input file is invalid; the message names the field
    and the value received."""
