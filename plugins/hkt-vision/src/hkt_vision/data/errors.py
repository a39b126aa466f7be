"""The error a data reader raises when a directory or file is not what it expects."""

from __future__ import annotations

from hkt_core import ConfigError


class DatasetError(ConfigError):
    """Missing or malformed data: the message names the path, what was found and what was expected."""
