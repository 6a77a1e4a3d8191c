"""Package discovery for mmbench's layout; everything else is declared in pyproject.toml.

The plugin folders live at the repository root but install inside mmbench (pyproject.toml, `[tool.setuptools]
package-dir`: methods/ -> mmbench.methods, datasets/ -> mmbench.datasets, ...). `setuptools.find_packages` finds
the packages in a folder but cannot put them under another name, so this file does it once pyproject.toml has been
read: every regular package (a folder with an `__init__.py`) under each mapped folder is packaged under the mapped
name. A new method folder is thereby packaged, YAML files included (`[tool.setuptools.package-data]`), without
being listed anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from setuptools import find_packages, setup
from setuptools.dist import Distribution

ROOT = os.path.dirname(os.path.abspath(__file__))


def mapped_packages(package_dir: Mapping[str, str], root: str = ROOT) -> list[str]:
    """Every package of the installed layout: each mapped package and the regular packages under its folder."""
    packages = set()
    for package, folder in package_dir.items():
        packages.add(package)
        packages.update(f"{package}.{name}" for name in find_packages(where=os.path.join(root, folder)))
    return sorted(packages)


class MappedPackagesDistribution(Distribution):
    """Reads pyproject.toml as usual, then lists the packages from its `package-dir`."""

    def parse_config_files(self, *args, **kwargs) -> None:
        super().parse_config_files(*args, **kwargs)
        self.packages = mapped_packages(self.package_dir)


if __name__ == "__main__":
    setup(distclass=MappedPackagesDistribution)
