"""The `mmbench` command line (entry point: `mmbench.cli.main:main`)."""
