"""The cell's progress bar on stderr (its frames start with the cell's label, which is how the sweep
tells them from everything else the cell prints)."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total_steps: int, description: str, enabled: bool):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, desc=description, unit="step", leave=False, file=sys.stderr)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def fields(self, steps: list[float], warmup: int) -> dict:
        return {}
