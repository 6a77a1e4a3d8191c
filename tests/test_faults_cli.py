"""Fault cases of the command line itself (issue 19): a full disk or read-only target that no command-specific
check caught first is still the user's to fix (exit 2, one line naming the path), while any other OS error
stays mmbench's own (exit 1, internal error)."""

from __future__ import annotations

import errno

import pytest
from faults import classify, expect_clean, run_in_process

import mmbench.cli.list_command as list_command

AREA = "cli"


@pytest.mark.parametrize(
    ("case", "code", "reason"),
    [
        ("ENOSPC reaching the CLI", errno.ENOSPC, "No space left on device"),
        ("EROFS reaching the CLI", errno.EROFS, "Read-only file system"),
        ("EDQUOT reaching the CLI", errno.EDQUOT, "Disk quota exceeded"),
    ],
)
def test_a_full_or_read_only_target_is_the_users_to_fix(capsys, monkeypatch, case, code, reason):
    def fail(args):
        raise OSError(code, reason, "/data/runs/x.json")

    monkeypatch.setattr(list_command, "run", fail)
    result = run_in_process(capsys, "list")
    expect_clean(case, AREA, result, expect_code=2, names=["/data/runs/x.json", reason, "free space"])


def test_other_os_errors_stay_internal_errors(capsys, monkeypatch):
    def fail(args):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(list_command, "run", fail)
    result = run_in_process(capsys, "list")
    assert classify(result) == "internal error" and "please report it" in result.err
