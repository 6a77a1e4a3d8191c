"""Built-in missing-modality protocols (installed as `mmbench.protocols`; plugin floor, docs/architecture.md).

Specs in `specs.py`, registered under the `mmbench.protocols` entry-point group; the scenario sets of
docs/protocols.md in `scenario_sets.py`, `random_drop.py`, `pixel_drop.py` and `minority.py`.
"""
