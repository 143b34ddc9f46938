"""The progress bar over the binding budget, with the latest loss and throughput."""
from __future__ import annotations

from tqdm.auto import tqdm

BAR_FORMAT = "{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}{postfix}]"


class ProgressBar:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = tqdm(total=100, unit="%", desc="train", bar_format=BAR_FORMAT, disable=not enabled)

    def update(self, progress: float) -> None:
        self._bar.n = 100 * progress  # drawn with the next show() or tqdm's own refresh

    def show(self, loss: float, tokens_per_s: float | None) -> None:
        rate = f", {tokens_per_s:,.0f} tok/s" if tokens_per_s is not None else ""
        self._bar.set_postfix_str(f"loss {loss:.3f}{rate}", refresh=True)

    def write(self, line: str) -> None:
        if self.enabled:
            self._bar.write(line)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
