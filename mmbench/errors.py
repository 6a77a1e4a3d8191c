"""Error types that map onto the CLI's exit codes.

Everything a user can fix (a bad argument, config, plugin name or data file) raises a `UserError`
subclass: the CLI prints its message as one line and exits with code 2. Any other exception is a bug in
mmbench or a plugin and exits with code 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message must name the thing and the fix, on one line."""

    exit_code = 2


class ConfigError(UserError):
    """A config file or `--set` override is malformed, has an unknown key or a value of the wrong type."""


class PluginError(UserError):
    """A plugin name is unknown, its entry point fails to load, or two plugins claim one name."""


class RecordError(UserError):
    """A run record does not match the record schema or cannot be read."""


class NotAvailableError(UserError):
    """A command exists in the CLI but the part of mmbench that backs it has not been built yet."""
