"""Human output of ``dnactl``: aligned tables, colour only on a terminal."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

_COLOURS = {"ok": "32", "warning": "33", "error": "31;1", "skipped": "2"}


def use_colour(stream: TextIO) -> bool:
    """Colour when writing to a terminal, unless NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, status: str, colour: bool) -> str:
    """``text`` in the colour of ``status`` when colour is on."""
    code = _COLOURS.get(status)
    if not colour or not code:
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def table(rows: Sequence[Sequence[str]], header: Sequence[str], *, wrap_last: bool = True) -> str:
    """Align ``rows`` under ``header``; the last column wraps at the terminal width."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(_plain(cell)))
    total = shutil.get_terminal_size((120, 24)).columns
    lead = sum(w + 2 for w in widths[:-1])
    last_width = max(30, total - lead) if wrap_last else 10_000
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(header[:-1], widths, strict=False)) + "  " + header[-1]
    ]
    for row in rows:
        cells = [c + " " * (w - len(_plain(c))) for c, w in zip(row[:-1], widths, strict=False)]
        text = row[-1]
        chunks = _wrap(text, last_width)
        lines.append("  ".join(cells) + "  " + chunks[0])
        for chunk in chunks[1:]:
            lines.append(" " * lead + chunk)
    return "\n".join(line.rstrip() for line in lines)


def _plain(cell: str) -> str:
    """``cell`` without colour escapes (for width computations)."""
    out, skip = [], False
    for ch in cell:
        if ch == "\x1b":
            skip = True
        elif skip and ch == "m":
            skip = False
        elif not skip:
            out.append(ch)
    return "".join(out)


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines


def duration(seconds: float) -> str:
    """A short duration: ``12 ms``, ``1.3 s``, ``4 min``, ``2 h 5 min``, ``3 d 4 h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def timestamp(epoch: float) -> str:
    """Local time of ``epoch`` as ``YYYY-MM-DD HH:MM:SS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def results_table(results: Sequence[Mapping[str, Any]], colour: bool, *, when: bool = False) -> str:
    """The table of test results shown by ``dnactl run`` and ``dnactl results``."""
    rows = []
    for r in results:
        status = str(r["status"])
        row = [
            str(r["test"]),
            paint(status.upper(), status, colour),
            duration(float(r["duration"])),
        ]
        if when:
            row.insert(0, timestamp(float(r["started"])))
        row.append(str(r["message"]))
        rows.append(row)
    header = ["TEST", "STATUS", "TIME", "MESSAGE"]
    if when:
        header.insert(0, "STARTED")
    return table(rows, header)


def summary_line(results: Sequence[Mapping[str, Any]], colour: bool) -> str:
    """``8 tests: 6 ok, 1 error, 1 skipped``."""
    counts: dict[str, int] = {}
    for r in results:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    parts = [
        paint(f"{counts[s]} {s}", s, colour)
        for s in ("ok", "warning", "error", "skipped")
        if counts.get(s)
    ]
    noun = "test" if len(results) == 1 else "tests"
    return f"{len(results)} {noun}: " + ", ".join(parts)
