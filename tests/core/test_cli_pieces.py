"""The command line's pure pieces, with scripted inputs: exit codes, the
progress view, manifests, gs:// bucket URLs, token sources."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cod_retrieve import parse_bucket
from cod_retrieve.cli.main import Exit, Outcome, exit_code
from cod_retrieve.cli.output import PlainOutput
from cod_retrieve.cli.tokens import CommandToken, token_source
from cod_retrieve.errors import AuthError
from cod_retrieve.manifest import ManifestError, read_manifest
from cod_retrieve.progress import JobView, summary_line
from cod_retrieve.sinks import is_leftover


@pytest.mark.parametrize("outcome, code", [
    (Outcome(3, 0, False), Exit.OK),
    (Outcome(2, 1, False), Exit.INCOMPLETE),
    (Outcome(0, 3, False, ["AuthError"]), Exit.AUTH),
    (Outcome(1, 2, False, ["AuthError"]), Exit.INCOMPLETE),      # something saved: a rerun helps
    (Outcome(1, 2, False, ["StorageFullError"]), Exit.STORAGE_FULL),
    (Outcome(1, 2, True, ["StorageFullError"]), Exit.INTERRUPTED),
    (Outcome(0, 0, False), Exit.OK),
])
def test_exit_codes(outcome, code):
    assert exit_code(outcome) == code


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _progress(done: int, total: int = 1000) -> dict:
    return {"jobBytesDone": done, "jobBytesTotal": total}


def test_view_rate_and_time_left_follow_the_recent_window():
    clock = Clock()
    view = JobView(1000, window=10.0, clock=clock)
    assert view.snapshot().rate is None
    for _ in range(5):            # 20 bytes/s for 5 s
        clock.t += 1
        view.apply("progress", _progress(view.bytes_done + 20))
    snap = view.snapshot()
    assert snap.rate == pytest.approx(20.0) and snap.seconds_left == pytest.approx(900 / 20)
    for _ in range(20):           # then 100 bytes/s: after the window the old rate is gone
        clock.t += 1
        view.apply("progress", _progress(min(1000, view.bytes_done + 10)))
    assert view.snapshot().rate == pytest.approx(10.0)
    assert "%" in summary_line(view.snapshot()) and "left" in summary_line(view.snapshot())


def test_view_rows_and_plain_lines():
    clock = Clock()
    out = io.StringIO()
    view = JobView(10, clock=clock)
    plain = PlainOutput(out, view, every=5.0, clock=clock)

    def emit(name, payload):            # as Job._emit: the job's view first, then the listeners
        view.apply(name, payload)
        plain.event(name, payload)

    series = {"key": "1.2/1.3", "study": "1.2", "series": "1.3", "instances": 2, "savedInstances": 0, "size": 10}
    emit("series", {**series, "status": "downloading"})
    emit("progress", _progress(5, 10))         # not yet: no progress line within 5 s
    clock.t += 6
    emit("progress", _progress(8, 10))
    emit("series", {**series, "status": "saved", "savedInstances": 2})
    emit("error", {"error": "instance 1.4: CRC32C mismatch"})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("8 B of 10 B (80 %)")
    assert lines[1].startswith("saved") and "1.3  2/2 instances" in lines[1]
    assert lines[2] == "error: instance 1.4: CRC32C mismatch"
    assert [r.status for r in plain.view.snapshot().rows] == ["saved"]


def test_manifest_forms():
    assert read_manifest("# cohort\n1.2.3\n1.2.4, 1.2.3\n").studies == ["1.2.3", "1.2.4"]
    idc = read_manifest("\ufeffcollection_id;StudyInstanceUID;SeriesInstanceUID\nc;1.2;1.2.1\nc;1.2;1.2.2\n")
    assert idc.studies == ["1.2"] and idc.series == ["1.2.1", "1.2.2"]
    assert read_manifest("StudyInstanceUID,SeriesInstanceUID\n1.2,\n1.3,\n").series is None
    with pytest.raises(ManifestError, match=r"m.csv, line 3: SeriesInstanceUID 'x'"):
        read_manifest("StudyInstanceUID,SeriesInstanceUID\n1.2,1.2.1\n1.2,x\n", "m.csv")
    with pytest.raises(ManifestError, match="line 3 names a study but no SeriesInstanceUID"):
        read_manifest("StudyInstanceUID,SeriesInstanceUID\n1.2,1.2.1\n1.3,\n")
    with pytest.raises(ManifestError, match="no study UIDs"):
        read_manifest("# nothing\n")
    with pytest.raises(ManifestError, match="'1.2.x' is not a valid DICOM UID"):
        read_manifest("1.2.x\n")


def test_gs_urls_name_the_datastore_as_the_metadata_does():
    b = parse_bucket("gs://idc-open/cod/dicomweb", "http://127.0.0.1:1")
    assert (b.name, b.prefix, b.api_base) == ("idc-open", "cod/dicomweb", "http://127.0.0.1:1")
    assert b.tar_url("1.2", "1.3") == "http://127.0.0.1:1/idc-open/cod/dicomweb/studies/1.2/series/1.3.tar"
    assert parse_bucket("gs://idc-open/").prefix == ""
    with pytest.raises(Exception, match="no query"):
        parse_bucket("gs://b/p?token=x")


def test_token_sources(tmp_path):
    assert token_source(None, None, {"COD_RETRIEVE_TOKEN": "env"}) == ("env", None)
    assert token_source("flag", None, {"COD_RETRIEVE_TOKEN": "env"})[0] == "flag"
    cmd = CommandToken(f"{sys.executable} -c \"print('  tok  ')\"")
    assert asyncio.run(cmd()) == "tok" and cmd.calls == 1
    with pytest.raises(AuthError, match="printed no token"):
        asyncio.run(CommandToken(f"{sys.executable} -c \"print()\"")())
    with pytest.raises(AuthError, match="could not start"):
        asyncio.run(CommandToken(str(tmp_path / "no-such-command"))())


def test_leftovers_are_only_hidden_part_files():
    assert is_leftover(".1.2.3.dcm.ab12.part")
    assert not is_leftover("1.2.3.dcm") and not is_leftover("notes.part") and not is_leftover(".hidden")


def test_without_a_compiled_crc32c_it_warns_and_still_checks():
    """With neither crc32c nor google-crc32c importable, CPython falls back to
    the pure reference with a RuntimeWarning (a fresh interpreter: the choice is made once)."""
    code = ("import sys, warnings; sys.modules['crc32c'] = None; sys.modules['google_crc32c'] = None\n"
            "from cod_retrieve._compat import new_crc32c\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always'); c = new_crc32c(); c.update(b'123456789')\n"
            "print(hex(c.value), type(c).__name__, [str(x.message) for x in w])\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "py"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("0xe3069283 PureCrc32c") and "pip install crc32c" in out.stdout
