"""The plugin template's implementation files, as `mmbench new` ships them (`template.json`, package data).

examples/plugin-template/ is not installed with mmbench, so the files `mmbench new` copies from it travel in
`template.json`. tests/test_scaffold.py fails when the two differ; after changing the template, refresh the
snapshot from a checkout of the repository with

    python -m mmbench.scaffold.snapshot
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

from mmbench.atomic import write_json_atomic

SNAPSHOT = "template.json"
TEMPLATE_PACKAGE = "mmbench_plugin_template"
# The files of examples/plugin-template/ that `mmbench new` copies, by their path in the template.
FILES = (
    f"{TEMPLATE_PACKAGE}/model.py",
    f"{TEMPLATE_PACKAGE}/defaults.yaml",
    f"{TEMPLATE_PACKAGE}/protocol.py",
    f"{TEMPLATE_PACKAGE}/drop-first.yaml",
)


def read_template(folder: Path) -> dict[str, str]:
    """The snapshot of the template in `folder` (examples/plugin-template of a checkout)."""
    return {name: (folder / name).read_text(encoding="utf-8") for name in FILES}


def load_snapshot() -> dict[str, str]:
    """The snapshot shipped with this mmbench."""
    return json.loads(resources.files("mmbench.scaffold").joinpath(SNAPSHOT).read_text(encoding="utf-8"))


def main() -> int:
    repository = Path(__file__).resolve().parents[2]
    folder = repository / "examples" / "plugin-template"
    if not folder.is_dir():
        sys.stderr.write(f"no plugin template at {folder}: run this from a checkout of the mmbench repository\n")
        return 2
    write_json_atomic(Path(__file__).with_name(SNAPSHOT), read_template(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
