"""Errors the registry commands report as one line, each with its exit status."""


class RegistryError(Exception):
    """The request names something the registry does not have, or cannot be carried out."""

    exit_code = 2


class PromotionRefused(RegistryError):
    """A gate refused the promotion; nothing in the registry was changed."""

    exit_code = 1
