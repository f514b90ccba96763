"""Settings for grasp-relay (pydantic-settings, env prefix GRASP_)."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
