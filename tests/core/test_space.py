"""Space before time: what a download needs, decided from the plan alone."""

from __future__ import annotations

from cod_retrieve.errors import StorageFullError
from cod_retrieve.space import folder_bytes_needed, not_enough_space, shortfall, zip_bytes_needed
from cod_retrieve.zipstream import ZipStream


class _Inst:
    def __init__(self, size: int) -> None:
        self.size = size


def test_folder_needs_the_missing_bytes_and_room_for_log_json():
    assert folder_bytes_needed([]) == 0
    needed = folder_bytes_needed([_Inst(1000), _Inst(2500)])
    assert 3500 < needed <= 3500 + 2 * 400


def test_shortfall_only_when_known_and_short():
    assert shortfall(100, None) is None          # a picked folder: nobody can tell
    assert shortfall(100, 100) is None
    assert shortfall(100, 1000) is None
    assert shortfall(100, 40) == 60


def test_message_says_what_is_needed_and_free():
    e = not_enough_space(5_000_000_000, 2_000_000_000, "the disk holding /data")
    assert isinstance(e, StorageFullError)
    assert str(e).startswith("not enough space: this download needs 5.0 GB and the disk holding /data has "
                             "2.0 GB free; free 3.0 GB or more")


def _real_zip_size(entries) -> int:
    """The size of the zip the project's own writer makes of these entries."""
    z = ZipStream()
    size = 0
    for name, n in entries:
        size += sum(len(p) for p in z.add(name, b"x" * n))
    size += sum(len(p) for p in z.close())
    return size


def test_zip_estimate_bounds_a_real_stored_zip():
    entries = [(f"1.2.3.{i}/instances/1.2.3.4.{i}.dcm", 1000 + 37 * i) for i in range(50)]
    entries.append(("1.2.3.9/instances/big.dcm", 5_000_000))
    real = _real_zip_size(entries)
    est = zip_bytes_needed(entries, studies=1)
    assert real <= est <= real + 50 * 200 + 5000
