"""mmbench/sweep/jobs.py: after the sweep is interrupted no job process starts (a job thread that reaches
its start late used to launch a whole training the sweep then waited for), and a later sweep in the same
process starts jobs again."""

from __future__ import annotations

import io
import sys
import time

from mmbench.sweep import jobs
from mmbench.sweep.jobs import JobSettings


def test_no_job_starts_after_the_interruption_and_a_new_sweep_may_start_them(monkeypatch, tmp_path):
    started = []
    real_popen = jobs.subprocess.Popen

    def popen(command, **kwargs):
        started.append(command)
        return real_popen(command, **kwargs)

    monkeypatch.setattr(jobs.subprocess, "Popen", popen)
    settings = JobSettings(threads=1)
    log = io.StringIO()
    try:
        jobs.interrupt_children()
        clock = time.monotonic()
        assert jobs._run_child([sys.executable, "-c", "import time; time.sleep(60)"], log, settings) == 130
        assert time.monotonic() - clock < 5 and started == []
        assert "not started: the sweep was interrupted" in log.getvalue()
    finally:
        jobs.allow_jobs()
    with (tmp_path / "job.log").open("w") as real_log:
        assert jobs._run_child([sys.executable, "-c", "pass"], real_log, settings) == 0 and len(started) == 1
