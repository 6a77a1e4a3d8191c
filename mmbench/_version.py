"""The single source of mmbench's version (read statically by the build backend)."""

__version__ = "0.1.0"
