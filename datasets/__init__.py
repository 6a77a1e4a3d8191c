"""Built-in datasets and converters (installed as `mmbench.datasets`, never as top-level `datasets`,
which would shadow the Hugging Face package). The synthetic dataset registers under the `mmbench.datasets`
entry-point group and the converters of the official distributions (`converters/`) under `mmbench.converters`;
their specs are in `specs.py`.
"""
