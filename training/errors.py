"""Errors that training reports to the user as one clear line."""


class TrainingError(Exception):
    """Base for every error training explains to the user."""


class ConfigError(TrainingError):
    """The use-case config is missing or invalid."""


class DataError(TrainingError):
    """The dataset does not match its config."""
