"""Run configuration: plugin defaults < `--config FILE.yaml` < `--set key.sub=value` < explicit flags.

The defaults are the schema. A key that is not in a plugin's default YAML is rejected with its full path
and the keys that are allowed there, and a value must have the type of its default (an int is accepted
where a float is expected; `null` as a default means "any type"; an empty mapping is an open mapping).
Typos in keys are the most common cause of silent misconfiguration in segmentation toolkits' trackers,
so nothing unknown is ever ignored.

Defaults also carry the values they allow: `key: !check DEFAULT RULE` declares the default and its range
or choices in one place (`lr: !check 0.002 > 0`, `amp: !check off in {off, bf16, fp16}`; the grammar is
`Check`'s). Every resolved value is checked against its rule before anything runs, `--dry-run` included.

A YAML file, a plugin's defaults as well as a `--config` file, may inherit from others with a top-level
`_base_:` (a path relative to the including file, `package:file.yaml` for a file shipped in a package, or a
list of them). Merging is deep: mappings merge, any other value replaces; the file's own keys win over its
bases', later bases over earlier ones, and the inherited keys are listed where `_base_` is written.

A run config has four sections: `run` (harness settings shared by every run), `method`, `protocol`
and `dataset` (each the defaults of the chosen plugin). docs/configuration.md is the user's guide.
"""

from mmbench.config.files import (
    BASE_KEY,
    PluginDefaults,
    load_defaults,
    load_plugin_defaults,
    parse_yaml,
    read_config_layer,
    read_config_source,
    read_yaml_file,
)
from mmbench.config.resolve import (
    RUN_DEFAULTS_RESOURCE,
    SECTIONS,
    ConfigBuilder,
    ResolvedConfig,
    parse_override,
    resolve_run_config,
    to_yaml,
)
from mmbench.config.rules import Check, Checked, checked

__all__ = [
    "BASE_KEY",
    "RUN_DEFAULTS_RESOURCE",
    "SECTIONS",
    "Check",
    "Checked",
    "ConfigBuilder",
    "PluginDefaults",
    "ResolvedConfig",
    "checked",
    "load_defaults",
    "load_plugin_defaults",
    "parse_override",
    "parse_yaml",
    "read_config_layer",
    "read_config_source",
    "read_yaml_file",
    "resolve_run_config",
    "to_yaml",
]
