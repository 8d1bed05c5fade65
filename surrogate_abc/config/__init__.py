"""Protocol configs from TOML: the Protocol object and its parser (shipped configs are package data)."""
from __future__ import annotations

from .parse import CONFIG_DIR, load_protocol, parse_protocol, resolve_config_path
from .protocol import PRIOR_KINDS, Axis, FSPSettings, Prior, Protocol, SSASettings

__all__ = ["CONFIG_DIR", "PRIOR_KINDS", "Axis", "FSPSettings", "Prior", "Protocol", "SSASettings", "load_protocol",
           "parse_protocol", "resolve_config_path"]
