"""mmbench plugin template: the method `template-fusion` and the protocol `template-drop-first`.

`specs.py` holds what mmbench reads at discovery (light: no torch); `model.py` and `protocol.py` hold
the implementations, imported only when a run uses them.
"""

__version__ = "0.1.0"
