"""Settings for grasp-relay (pydantic-settings, env prefix GRASP_)."""

from config.loading import SettingsError, load_settings
from config.settings import Settings

__all__ = ["Settings", "SettingsError", "load_settings"]
