"""The bad-input rule every data set follows (DESIGN.md's invariant), in one place.

One bad file among thousands is skipped with a warning that names it and says what is
wrong, and counted; ``strict`` (the recipe's ``data.strict``) makes it fatal instead.
A data set that ends with nothing readable raises :class:`omnissl.DataError` itself.
"""

from __future__ import annotations

import warnings
from typing import Any

from omnissl.errors import DataError


def skip_or_raise(skipped: list[tuple[Any, str]], where: Any, reason: str, strict: bool, what: str = "",
                  cause: BaseException | None = None, warn: bool = True) -> None:
    """Skip one bad input (warn and record it in ``skipped``), or raise when ``strict``.

    Args:
        skipped: the data set's list of (where, reason) pairs; appended to.
        where: the bad file, record or line, as the user should see it.
        reason: what is wrong with it.
        strict: raise :class:`DataError` instead of skipping.
        what: a word or two for the kind of input ("volume", "unreadable image").
        cause: the exception behind it, chained to the DataError.
        warn: False when the data set reports its skipped inputs itself later (say, every
            time a cache is opened).
    """
    label = f"{what} {where}".strip()
    if strict:
        raise DataError(f"cannot use {label}: {reason}; fix or remove it, or set data.strict=false "
                        f"to skip it") from cause
    if warn:
        warnings.warn(f"skipping {label}: {reason}")
    skipped.append((where, reason))
