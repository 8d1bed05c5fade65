"""Errors a user can act on: the CLI prints them as one line and exits with status 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input (file, config, argument). The message names the file/field and the fix."""


class ConfigError(UserError):
    """A protocol config (TOML) is missing, malformed or inconsistent."""


class DataFileError(UserError):
    """An HDF5 file is not ours, is truncated, incomplete or has the wrong layout."""
