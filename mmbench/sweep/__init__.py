"""`mmbench sweep SUITE.yaml`: plan, run, resume and report a matrix of runs described by one suite file.

A suite names datasets, method configs, seeds, one training protocol and the evaluation protocols
(docs/sweeps.md). The sweep plans one training job per (dataset, method config, seed) and one
evaluation job per further protocol of that training's selected checkpoint (`mmbench eval`), never a
training per protocol. Every job runs as the ordinary command line (`python -m mmbench run|eval`), so a
sweep's records are exactly the records of hand-typed commands.

Modules, one job each: `suite` (read and check the file), `resolving` (the project's config resolution,
with the YAML it reads cached for planning), `planning` (the job list), `state` (per-job state files and
what "already done" means), `jobs` (the job function both executors run), `local` and `submitit_backend`
(executors), `driver` (dispatching jobs in dependency order), `display` (tables and progress).
"""

from mmbench.sweep.planning import SweepPlan, plan_sweep
from mmbench.sweep.suite import Suite, load_suite

__all__ = ["Suite", "SweepPlan", "load_suite", "plan_sweep"]
