"""What an archive from elsewhere (zip or tar over HTTP) may hold: a pure policy.

No I/O and no archive parsing: readers (`zipread.ZipReader`, `tarstream.TarReader`
events) ask it about names, member kinds and how many bytes came out of how
many, and it answers with a refusal that names the entry. Files are written
from validated UIDs, never from entry names; still, an archive that tries to
climb out of its folder, hide a link or inflate without bound was written by
someone who meant harm (or is broken), so it is refused as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TarError
from .tarstream import MemberStart, member_name_problem

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


class ArchiveError(TarError):
    """A zip or tar from an archive source is truncated, corrupt, or holds an entry we refuse.

    A `TarError`, so code that stops a series on a bad tar stops on a bad zip too."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what an archive may inflate to; tests shrink them.

    The ratio limit applies once an entry has produced `ratio_after` bytes, so
    small, very regular files (a blank image, a run of zeros in a header) pass,
    while a bomb is stopped after at most `ratio_after` bytes plus one
    decompression step, long before the absolute limits are near."""

    max_total_bytes: int = 64 * GiB       # all entries together, decompressed
    max_entry_bytes: int = 16 * GiB       # one entry, decompressed
    max_ratio: float = 200.0              # decompressed / compressed, per entry
    ratio_after: int = 1 * MiB


def name_problem(name: str) -> str | None:
    """Why an entry name is refused (`..`, `/abs`, `\\`, `C:`, NUL, control characters...),
    or None. Directory entries may end with one '/'."""
    if name.endswith("/") and len(name) > 1:
        name = name[:-1]
    return member_name_problem(name)


def check_name(name: str, what: str = "zip entry") -> None:
    problem = name_problem(name)
    if problem:
        raise ArchiveError(f"{what} {name!r} {problem}: the archive is refused")


# tarstream kinds that are fine to read: only regular files and directories
# carry nothing that points outside the archive.
_SAFE_KINDS = {"file", "dir"}


def kind_problem(kind: str) -> str | None:
    """Why a tar member kind ("symlink", "link", "device", "fifo", "other") is refused, or None."""
    if kind in _SAFE_KINDS:
        return None
    if kind in ("symlink", "link"):
        return f"is a {'symbolic' if kind == 'symlink' else 'hard'} link"
    if kind == "device":
        return "is a device node"
    if kind == "fifo":
        return "is a FIFO"
    return f"is of an unsupported kind ({kind})"


def check_tar_member(member: MemberStart) -> None:
    """Refuse a tar member (from `TarReader`) whose name or kind is unsafe.

    Zip has no equivalent here: a zip symlink is told only by the Unix mode
    in the central directory's external attributes, which a front-to-back
    reader never sees (see `zipread`)."""
    problem = name_problem(member.name) or kind_problem(member.kind)
    if problem:
        link = f" -> {member.linkname!r}" if member.linkname else ""
        raise ArchiveError(f"tar member {member.name!r}{link} {problem}: the archive is refused")


class Budget:
    """Counts decompressed bytes as they stream and refuses as soon as a limit is passed.

    One per archive: `start(name, declared)` for each entry, then `add(out, in_)`
    for every piece (bytes produced, compressed bytes consumed for them)."""

    def __init__(self, limits: Limits = Limits(), what: str = "zip entry") -> None:
        self.limits = limits
        self.what = what
        self.total = 0
        self._name = ""
        self._out = 0
        self._in = 0

    def start(self, name: str, declared_size: int | None = None) -> None:
        self._name, self._out, self._in = name, 0, 0
        if declared_size is not None and declared_size > self.limits.max_entry_bytes:
            raise ArchiveError(f"{self.what} {name!r} declares {declared_size} bytes, more than the "
                               f"limit of {self.limits.max_entry_bytes} per entry: refused")

    def add(self, produced: int, consumed: int) -> None:
        lim = self.limits
        self._out += produced
        self._in += consumed
        self.total += produced
        if self._out > lim.max_entry_bytes:
            raise ArchiveError(f"{self.what} {self._name!r} inflates past the limit of "
                               f"{lim.max_entry_bytes} bytes per entry: refused")
        if self.total > lim.max_total_bytes:
            raise ArchiveError(f"archive inflates past the limit of {lim.max_total_bytes} bytes in total "
                               f"(at {self.what} {self._name!r}): refused")
        if self._out > lim.ratio_after and self._out > lim.max_ratio * max(self._in, 1):
            raise ArchiveError(f"{self.what} {self._name!r} inflates {self._out} bytes from {self._in} "
                               f"(more than {lim.max_ratio:g} to 1): refused as a decompression bomb")
