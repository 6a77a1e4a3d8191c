"""How a torchrun run leaves its process group (mmbench/runtime/distributed.py `shutdown_distributed`).

The two-process run itself is tested end to end in tests/test_training.py; these tests pin what a rare
teardown abort made matter (docs/distributed.md, "Leaving the process group"): a finished run waits for every
rank before leaving, a failed one does not wait (its peers may never arrive), and a worker that has left its
group ends without the interpreter's finalization.
"""

from __future__ import annotations

import pytest
import torch

import mmbench.cli.run_command as run_command
import mmbench.runtime.distributed as distributed
from mmbench.cli.main import main
from mmbench.errors import UserError


@pytest.fixture
def calls(monkeypatch):
    """A process group that records what is done to it, instead of a real one."""
    made: list[str] = []
    monkeypatch.setattr(distributed, "_LEFT_GROUP", False)
    monkeypatch.setattr(distributed.os, "_exit", lambda code: made.append(f"exit {code}"))
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: made.append("barrier"))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: made.append("destroy"))
    return made


def test_a_finished_run_waits_for_every_rank_before_leaving(calls):
    distributed.shutdown_distributed(wait_for_peers=True)
    assert calls == ["barrier", "destroy"]


def test_a_failed_run_leaves_without_waiting(calls):
    distributed.shutdown_distributed()
    assert calls == ["destroy"]


def test_nothing_is_done_outside_a_process_group(monkeypatch, calls):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    distributed.shutdown_distributed(wait_for_peers=True)
    assert distributed.end_worker_process(3) == 3
    assert calls == []


def test_a_worker_that_left_its_group_ends_at_once_with_its_code(calls):
    distributed.shutdown_distributed(wait_for_peers=True)
    distributed.end_worker_process(0)
    assert calls == ["barrier", "destroy", "exit 0"]


@pytest.mark.parametrize("outcome", ["finished", "failed"])
def test_mmbench_run_waits_only_when_the_run_finished(monkeypatch, tmp_path, outcome):
    waited: list[bool] = []

    def shutdown(*, wait_for_peers=False):
        waited.append(wait_for_peers)

    monkeypatch.setattr(distributed, "shutdown_distributed", shutdown)
    record = tmp_path / "result.json"

    def execute(plan):
        if outcome == "failed":
            raise UserError("the store went away")
        return record

    monkeypatch.setattr(run_command, "execute_run", execute)
    monkeypatch.setattr(run_command, "show_result", lambda path: None)
    ended: list[int] = []
    monkeypatch.setattr(distributed, "end_worker_process", lambda code: ended.append(code) or code)
    code = main(["run", "early-fusion", "--protocol", "last1", "--out", str(tmp_path)])
    assert waited == [outcome == "finished"]
    assert code == (0 if outcome == "finished" else 2)
    assert ended == ([0] if outcome == "finished" else [])
