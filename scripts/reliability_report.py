"""Turns the fault suite's figures (JSON written by `make chaos`) into the table of
docs/reliability.md, between its "figures" markers; the rest of that file is written by hand.

    python scripts/reliability_report.py docs/reliability-figures.json docs/reliability.md
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"

# Each row of RELIABILITY.md: what is done to the platform, and the figure it is judged by.
ROWS = {
    "R1": ("payment kill -9 every 5 s during 10,000 checkouts", "lost 0, double charges 0"),
    "R2": ("product kill -9 every 5 s, contended stock", "below zero 0, oversold 0"),
    "R3": ("order kill -9 mid-saga every 5 s", "sagas recovered N/N, duplicates 0"),
    "R4": ("broker killed for 10 s", "published = written"),
    "R5": ("relay crash between publish and mark", "duplicate side effects 0"),
    "R6": ("forced redelivery", "emails = unique events"),
    "R7": ("1,000 keys x 10 concurrent sends, reused key", "one order per key, 5xx 0"),
    "R8": ("2 s latency on payment", "fast-fail p99 <= 10 ms, catalog ratio <= 1.5"),
    "R9": ("refund and status out of order", "inconsistent 0, refunds per cancel = 1"),
    "R10": ("50 % of payment calls answer 500", "calls / attempts <= 1.2 healthy"),
    "R11": ("resets, slow close, 10 kB/s links", "hung 0, fds back to baseline"),
    "R12": ("a service SIGSTOPped for 10 s", "hung beyond timeout + 1 s: 0"),
    "R13": ("open-loop load at 2x peak", "goodput >= 0.9, admitted p99 <= 3x"),
    "R14": ("SIGTERM under load, second instance running", "5xx 0"),
    "R15": ("database locked for 3 s", "partial writes 0"),
    "R16": ("discovery source down for 30 s", "error rate <= 1 %"),
    "R17": ("a clock 5 minutes off", "false 401s 0, early expiries 0"),
}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _row_of(key: str) -> str:
    match = re.match(r"(R\d+)", key)
    return match.group(1) if match else key


def _verdicts(tests: dict[str, str]) -> dict[str, str]:
    """Row -> the verdicts of the tests named after it (``test_r8_...``)."""
    found: dict[str, list[str]] = {}
    for name, outcome in tests.items():
        match = re.match(r"test_(r\d+)_", name)
        if match:
            found.setdefault(match.group(1).upper(), []).append(outcome)
    return {row: ", ".join(sorted(set(v))) for row, v in found.items()}


def _machine() -> str:
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kb = int(meminfo.read_text().split()[1])
        mem = f", {total_kb / 1024 / 1024:.0f} GiB"
    return (
        f"{os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def table(doc: dict[str, Any]) -> str:
    faults: dict[str, dict[str, Any]] = doc.get("faults", {})
    verdicts = _verdicts(doc.get("tests", {}))
    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {_machine()}, "
        "with `make chaos` (every fault at RELIABILITY.md's size).",
        "",
        "| row | fault | goal | test | figures |",
        "|---|---|---|---|---|",
    ]
    measured = {_row_of(k) for k in faults}
    for row, (fault, goal) in ROWS.items():
        figures = "; ".join(
            f"{name}={_value(v)}"
            for key in sorted(k for k in faults if _row_of(k) == row)
            for name, v in faults[key].items()
        )
        verdict = verdicts.get(row, "not run" if row not in measured else "")
        lines.append(f"| {row} | {fault} | {goal} | {verdict or '-'} | {figures or '-'} |")
    return "\n".join(lines)


def main(figures_path: str, doc_path: str) -> None:
    doc = json.loads(Path(figures_path).read_text())
    target = Path(doc_path)
    text = target.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{doc_path} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    target.write_text(f"{head}{BEGIN}\n{table(doc)}\n{END}{tail}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
