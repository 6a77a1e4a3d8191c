"""Error types that map onto the CLI's exit codes.

Everything a user can fix (a bad argument, config, plugin name or data file) raises a `UserError`
subclass: the CLI prints its message as one line and exits with code 2. Any other exception is a bug in
mmbench and exits with code 1; a plugin that breaks its contract raises
`PluginContractError` (exit 2), so its author, not mmbench, gets the blame.
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


class PluginContractError(UserError, RuntimeError):
    """A plugin broke its contract (docs/checking.md): wrong logits shape, class count or dtype, labels instead
    of logits, non-finite logits, a missing modality read, or an exception raised inside the plugin's own code.

    The plugin's author fixes it, not mmbench's: exit 2, and the message names the plugin, its distribution,
    the rule and the fix. It is also a `RuntimeError`, the type the evaluation engine raised for these
    failures before this class existed, so callers catching that keep working.
    """
