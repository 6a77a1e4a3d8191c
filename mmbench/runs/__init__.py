"""Run orchestration: plan a run from the command line (`planning`), execute it and write its record
(`execution`), and evaluate a saved checkpoint (`checkpoint_eval`).
"""
