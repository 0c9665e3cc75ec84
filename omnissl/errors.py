"""Errors meant for people: each says what is wrong, where, and what to do."""

from __future__ import annotations


class OmnisslError(Exception):
    """Base class of every error omnissl raises for a user mistake.

    The CLI prints the message (no traceback) and exits with status 2.
    """


class RecipeError(OmnisslError):
    """A recipe file or a command-line override is wrong (unknown key, wrong type)."""


class PluginError(OmnisslError):
    """A plugin is broken: a name registered twice, a hook with a bad signature."""


class DataError(OmnisslError):
    """Input data cannot be used: no readable file, wrong shape, missing labels."""


class TrainingError(OmnisslError):
    """Training cannot go on: a non-finite loss, a checkpoint that does not match."""
