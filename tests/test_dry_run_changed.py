"""`mmbench run --dry-run` lists under "Changed from the defaults" only the keys whose value differs from the
plugins' defaults: a `--config` file that restates defaults (a result.json re-run holds every key) changes
nothing by restating them (mmbench/runs/planning.py: `changed_from_defaults`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mmbench.cli.main import main
from mmbench.config import to_yaml
from mmbench.runs.planning import RunRequest, changed_from_defaults, plan_run


def plan(tmp_path: Path, config: dict | None = None, overrides: tuple[str, ...] = ()):
    path = None
    if config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(to_yaml(config))
    return plan_run(
        RunRequest(
            method="stars", protocol="last1", dataset="synthetic", command="test", config_file=path, overrides=overrides
        )
    )


def test_a_file_restating_every_default_changes_nothing(tmp_path):
    everything = plan(tmp_path).config.data
    restated = plan(tmp_path, everything)
    assert len([s for s in restated.config.sources.values() if s != "defaults"]) > 20  # the file set them all
    assert changed_from_defaults(restated) == {}


def test_only_the_keys_whose_value_differs_are_listed(tmp_path):
    everything = plan(tmp_path).config.data
    everything["method"]["train"]["iterations"] = 7
    result = plan(tmp_path, everything, overrides=("run.seed=3", "protocol.batch_size=4"))
    changed = changed_from_defaults(result)
    # protocol.batch_size=4 is last1's default: set by --set, but not a change.
    assert set(changed) == {"method.train.iterations", "run.seed"}
    assert changed["run.seed"].startswith("--set") and changed["method.train.iterations"].startswith("file ")


def test_the_dry_run_table_shows_only_changed_keys(tmp_path, capsys):
    everything = plan(tmp_path).config.data
    everything["method"]["train"]["iterations"] = 7
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(everything, sort_keys=False))
    code = main(["run", "stars", "--protocol", "last1", "--config", str(tmp_path / "c.yaml"), "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    table = out[out.index("Changed from the defaults") :]
    assert "method.train.iterations" in table
    assert "method.train.lr" not in table and "run.seed" not in table
