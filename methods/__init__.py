"""Built-in segmentation methods (installed as `mmbench.methods`; plugin floor, docs/architecture.md).

Each method lives in its own subpackage whose `__init__` holds a light `SPEC`
(`mmbench.plugins.MethodSpec`), registered in `pyproject.toml` under the `mmbench.methods` entry-point
group exactly as a third-party plugin registers. Blocks several methods share live in `blocks/`.
"""
