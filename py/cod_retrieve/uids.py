"""DICOM UID checks: UIDs become folder and file names, so they must be harmless."""

from __future__ import annotations

import re

from .errors import UidError

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def is_uid(value: object) -> bool:
    """True for a string of digit groups joined by dots, at most 64 characters.

    Leading zeros inside a component are tolerated: real archives have them,
    and they are as harmless in a path as any other digit.
    """
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.fullmatch(value))


def check_uid(value: object, what: str) -> str:
    """Return `value` if it is a UID, else raise an error that names it."""
    if not is_uid(value):
        shown = repr(value)[:80]
        raise UidError(f"{what} {shown} is not a valid DICOM UID (digits and dots, at most 64 characters)")
    return value  # type: ignore[return-value]
