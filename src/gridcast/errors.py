"""User-facing errors.

Anything a user can cause (a bad file, a malformed flag, a broken checkpoint) is raised as a
`GridcastError`; the CLI prints its one-line message and exits with status 2 instead of showing a
traceback from deep inside pandas or torch.
"""
from __future__ import annotations


class GridcastError(Exception):
    """A problem with the user's input or files, explained in one line."""

    exit_code = 2


class InputError(GridcastError, ValueError):
    """Bad data: a file, row, track or argument that cannot be used. The message names it."""


class CheckpointError(GridcastError):
    """A model directory that is missing, truncated, corrupted or from an unknown version."""
