"""Specs registered through the `mmbench.methods` and `mmbench.protocols` entry points (pyproject.toml).

Keep this module light: no torch, no model code. `mmbench list` imports it; the `target` of each spec
is imported only when a run needs it, so a broken model file fails only the runs that use it.
"""

from mmbench.plugins import MethodSpec, ProtocolSpec

_PACKAGE = "mmbench_plugin_template"

METHOD = MethodSpec(
    name="template-fusion",  # = the entry-point name; lowercase, digits, '-', '_', '.'
    summary="Template: per-modality CNN encoders, masked mean fusion of the available modalities.",
    version="0.1.0",  # bump whenever the method's numbers could change
    target=f"{_PACKAGE}.model:TemplateFusion",
    paper=None,  # e.g. "https://arxiv.org/abs/..."
    modalities=(),  # modalities it accepts; () = any the dataset has
    required_modalities=(),  # modalities it cannot run without
    min_modalities=1,
    needs_all_modalities_for_training=False,
    defaults=f"{_PACKAGE}:defaults.yaml",  # every config key, with its default and type
)

PROTOCOL = ProtocolSpec(
    name="template-drop-first",
    summary="Template: all modalities, then all but one (default: the first); gap between the two.",
    version="1",  # bump whenever the protocol's numbers could change
    target=f"{_PACKAGE}.protocol:DropFirst",
    defaults=f"{_PACKAGE}:drop-first.yaml",
)
