"""Where the time goes: py-spy samples of running processes, as tables of shares.

    spies = [record(pid, seconds, folder / f"{pid}.txt") for pid in pids]; ...; wait(spies)
    print(top_frames(paths, top=40))

`record` starts `py-spy record` on one process (raw stacks, 250 samples a second, without
pausing it); `top_frames` reads any number of such files and gives the share of samples each
function was on the stack in (inclusive) and at its top (self).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from harness.stack import BIN, ROOT

RATE = 250


def py_spy() -> str:
    """py-spy from PATH or next to this Python; exits naming the fix when there is none."""
    beside = BIN / "py-spy"
    exe = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if exe is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return exe


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample process `pid` for `seconds` into `out` (py-spy's raw format)."""
    return subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", str(RATE),
         "--nonblocking", "--duration", str(max(1, round(seconds))), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def top_frames(paths: list[Path], top: int) -> str:
    """py-spy's raw stacks (`frame;frame;... count`) as two tables: inclusive and self."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_frame(f) for f in stack.split(";") if not f.startswith("process ")]
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples; inclusive (on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines.append("self (at the top of the stack):")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top // 2)]
    return "\n".join(lines)


def _frame(raw: str) -> str:
    """`function (path:line)` -> `function (package/module.py)`."""
    match = re.match(r"(.*) \((.*?):\d+\)$", raw)
    if match is None:
        return raw
    where = match[2].split("site-packages/")[-1].replace(str(ROOT) + "/", "")
    return f"{match[1]} ({where})"
