"""Helpers shared by the benchmark scripts: import path, progress on stderr, JSON output."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Where generated figures (PNG + CSV) go.
FIGURES = ROOT / "docs" / "figures"


class Progress:
    """A progress bar on stderr: tqdm when installed, else a plain line redrawn in place.

    Quiet when ``enabled`` is false or stderr is not a terminal and ``force`` is false.
    """

    def __init__(self, total: float, desc: str = "", unit: str = "", enabled: bool = True) -> None:
        self.total = total
        self.desc = desc
        self.enabled = enabled
        self._n = 0.0
        self._bar: Any = None
        self._last = 0.0
        self._out: TextIO = sys.stderr
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}]{postfix}",
        )

    def update_to(self, n: float, postfix: str = "") -> None:
        """Set the progress to ``n`` (of ``total``) with an optional status text."""
        if not self.enabled:
            return
        n = min(n, self.total)
        if self._bar is not None:
            self._bar.update(n - self._bar.n)
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            return
        now = time.monotonic()
        if now - self._last < 0.5 and n < self.total:
            return
        self._last = now
        pct = 100.0 * n / self.total if self.total else 100.0
        self._out.write(f"\r{self.desc} {pct:5.1f}% {postfix}    ")
        self._out.flush()

    def set_description(self, desc: str) -> None:
        """Change the label in front of the bar."""
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description_str(desc)

    def close(self) -> None:
        """Finish the bar (a newline on the plain fallback)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self._out.write("\n")
            self._out.flush()


def clean_json(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def dump_json(obj: Any, stream: TextIO | None = None) -> None:
    """Print ``obj`` as one JSON object (NaN as null) followed by a newline.

    ``stream`` defaults to ``sys.stdout`` as it is at the call, not at import
    (a captured or redirected stdout replaces the object).
    """
    if stream is None:
        stream = sys.stdout
    json.dump(clean_json(obj), stream, sort_keys=False)
    stream.write("\n")


def have_matplotlib(script: str) -> bool:
    """Tell whether matplotlib can be imported; if not, say once on stderr what to install.

    Figure scripts check this before they start a long run, so that a missing plotting
    library costs the PNG files (the CSV files are still written), never the run.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            f"{script}: matplotlib is not installed, so no PNG is written (CSV only); "
            "install it with: pip install 'dnaagent[bench]'",
            file=sys.stderr,
        )
        return False
    return True
