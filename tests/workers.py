"""What the multi-worker tests read from a run and from the launcher's output."""

from __future__ import annotations

import csv
import os


def history(run_dir) -> list[dict[str, float]]:
    with open(run_dir / "history.csv", newline="") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def worker_lines(stderr: str) -> dict[int, str]:
    """The launcher's `worker i of n: pid P, ...` lines by worker."""
    lines = {}
    for line in stderr.splitlines():
        if line.startswith("senet train: worker ") and " pid " in line:
            lines[int(line.split()[3])] = line
    return lines


def pid_of(line: str) -> int:
    return int(line.split(" pid ")[1].split(",")[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
