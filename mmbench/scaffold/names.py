"""The names a new plugin package needs, all derived from the plugin's name, so they agree with each other."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from mmbench.errors import UserError
from mmbench.plugins import _NAME_PATTERN  # the rule every spec's name obeys (mmbench/plugins.py)


@dataclass(frozen=True)
class PluginNames:
    """`name`: the plugin's (= the entry point's); `package`: the Python package; `distribution`: what pip installs
    and `mmbench list` shows as "provided by"; `class_name`: the implementation class."""

    kind: str
    name: str
    package: str
    distribution: str
    class_name: str


def plugin_names(kind: str, name: str) -> PluginNames:
    """Names for a new `kind` plugin called `name`; a name a spec would refuse is refused here, in one line."""
    if not _NAME_PATTERN.match(name):
        raise UserError(
            f"plugin name {name!r} is invalid: use lowercase letters, digits, '-', '_' or '.', starting with a "
            "letter or digit (e.g. my-net)"
        )
    words = [word for word in re.split(r"[-_.]+", name) if word]
    package = "_".join(words)
    if not package.isidentifier() or keyword.iskeyword(package):
        package = f"mmbench_{package}"
    class_name = "".join(word[:1].upper() + word[1:] for word in words)
    if not class_name.isidentifier():
        class_name = f"Plugin{class_name}"
    return PluginNames(kind=kind, name=name, package=package, distribution=name, class_name=class_name)
