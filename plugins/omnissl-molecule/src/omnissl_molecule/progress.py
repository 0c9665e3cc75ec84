"""Progress of a long preprocessing pass, for terminals and for logs."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Records featurised: a tqdm bar on a terminal; elsewhere (logs, CI) a few plain lines on
    stderr: one per tenth of the records at most every ``PLAIN_EVERY`` seconds, at least every
    ``PLAIN_AT_LEAST`` seconds, and one at the end.

    Args:
        total: records to featurise in all.
        done: records already featurised by an interrupted run.
    """

    PLAIN_EVERY = 30.0
    PLAIN_AT_LEAST = 300.0

    def __init__(self, total: int, done: int = 0):
        self.total, self.done, self.initial, self.shown = total, done, done, done
        self.began = self.last = time.perf_counter()
        self.bar = tqdm(total=total, initial=done, desc="featurise", unit="mol", dynamic_ncols=True,
                        mininterval=0.5, file=sys.stderr) if sys.stderr.isatty() else None

    def update(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.perf_counter()
        tenth = self.done - self.shown >= self.total / 10
        if self.done < self.total and (tenth and now - self.last >= self.PLAIN_EVERY
                                       or now - self.last >= self.PLAIN_AT_LEAST):
            self._line(now)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done > self.shown:
            self._line(time.perf_counter())

    def _line(self, now: float) -> None:
        self.last, self.shown = now, self.done
        rate = (self.done - self.initial) / max(now - self.began, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = ("" if not 0 < left < float("inf") else f", about {left / 60:.0f} min left" if left >= 90
               else f", about {left:.0f} s left")
        print(f"featurise: {self.done}/{self.total} molecule records ({100 * self.done / max(self.total, 1):.0f}%), "
              f"{rate:.1f}/s{eta}", file=sys.stderr, flush=True)
