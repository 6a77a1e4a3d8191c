"""Built-in datasets and converters (installed as `mmbench.datasets`, never as top-level `datasets`,
which would shadow the Hugging Face package). Registered under the `mmbench.datasets` entry-point
group. None ship yet.
"""
