"""The `mmbench` command line (entry point: `mmbench.cli.main:main`): argument parsing, one module per
command, and the translation of every failure into one line and an exit code (2: yours to fix, 1: ours)."""
