"""Built-in segmentation methods (installed as `mmbench.methods`).

Each method lives in its own subpackage with a light `spec` (see `mmbench.plugins.MethodSpec`) that
is registered in `pyproject.toml` under the `mmbench.methods` entry-point group, exactly as a
third-party plugin registers. None ship yet.
"""
