"""Built-in missing-modality protocols (installed as `mmbench.protocols`), registered under the
`mmbench.protocols` entry-point group. None ship yet.
"""
