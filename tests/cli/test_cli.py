"""The command line, run as a user runs it (a child process), against the real
bucket server with real COD studies: files byte-equal to the bucket's, exit
codes, `--json` events, resume after Ctrl-C, a refused token refreshed."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from support.cli import cli_argv, cli_env, events, held_child, last, run_cli
from support.faultproxy import Fault, on_path
from support.files import bucket_files, folder_files

BUCKET = "gs://cod-demo/demo/dicomweb"


def _want(server, studies) -> dict:
    out = {}
    for s in studies:
        out.update(bucket_files(server, s))
    return out


def test_download_resume_and_verify(bucket_server, demo_studies, tmp_path):
    uids = [s.study_uid for s in demo_studies]
    n_instances = sum(len(v) for s in demo_studies for v in s.series.values())
    want = _want(bucket_server, demo_studies)

    stats = run_cli("stats", BUCKET, *uids, "--api-base", bucket_server.url, "--json")
    assert stats.returncode == 0, stats.stderr
    st = last(events(stats), "stats")
    assert st["totalInstanceCount"] == n_instances and len(st["items"]) == n_instances
    assert st["totalSizeBytes"] == sum(s.total_dicom_bytes for s in demo_studies)

    first = run_cli("download", BUCKET, *uids, "--api-base", bucket_server.url, "--out", tmp_path, "--json")
    assert first.returncode == 0, first.stderr
    evts = events(first)
    assert folder_files(tmp_path) == want
    assert len([e for e in evts if e["event"] == "save"]) == n_instances
    assert all("buffer" not in e["file"] for e in evts if e["event"] == "save")    # bytes never printed
    assert last(evts, "complete")["failed"] == [] and last(evts, "result")["exitCode"] == 0
    assert json.loads((tmp_path / "log.json").read_text())["logs"]

    again = run_cli("download", BUCKET, *uids, "--api-base", bucket_server.url, "--out", tmp_path, "--json")
    assert again.returncode == 0, again.stderr
    evts = events(again)
    assert last(evts, "result")["alreadySaved"] == n_instances
    assert last(evts, "complete")["bytesDone"] == 0 and not [e for e in evts if e["event"] == "save"]

    ok = run_cli("verify", BUCKET, *uids, "--api-base", bucket_server.url, "--out", tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{n_instances} files match the metadata, 0 missing, 0 changed, 0 extra" in ok.stdout

    # Damage the folder behind the tool's back: one byte flipped (size kept), one
    # file deleted, one stray file. log.json still lists the first two.
    files = sorted(p for p in tmp_path.rglob("*.dcm"))
    flipped, deleted = files[0], files[1]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    deleted.unlink()
    (files[2].parent / "stray.txt").write_text("not DICOM")
    bad = run_cli("verify", BUCKET, *uids, "--api-base", bucket_server.url, "--out", tmp_path, "--json")
    assert bad.returncode == 1
    report = last(events(bad), "verify")
    rel = lambda p: str(p.relative_to(tmp_path))  # noqa: E731
    assert report["missing"] == [rel(deleted)]
    assert [c["path"] for c in report["changed"]] == [rel(flipped)] and "CRC32C" in report["changed"][0]["problem"]
    assert report["extra"] == [rel(files[2].parent / "stray.txt")] and not report["clean"]

    # verify took both out of log.json: a download puts back exactly those two (the
    # flipped one, of the right size, would otherwise pass the fast check).
    fix = run_cli("download", BUCKET, *uids, "--api-base", bucket_server.url, "--out", tmp_path)
    assert fix.returncode == 0, fix.stderr
    assert f"{n_instances - 2} instances already saved" in fix.stdout
    (files[2].parent / "stray.txt").unlink()
    assert folder_files(tmp_path) == want


def test_zip_per_study_opens_with_unzip(bucket_server, demo_studies, tmp_path):
    study = demo_studies[1]
    proc = run_cli("download", BUCKET, study.study_uid, "--api-base", bucket_server.url, "--out", tmp_path,
                   "--zip", "--json")
    assert proc.returncode == 0, proc.stderr
    z = tmp_path / f"{study.study_uid}.zip"
    assert last(events(proc), "result")["zips"] == [str(z)]
    assert subprocess.run(["unzip", "-tq", str(z)], capture_output=True).returncode == 0
    import hashlib
    with zipfile.ZipFile(z) as zf:
        got = {f"{study.study_uid}/{n}": hashlib.sha256(zf.read(n)).hexdigest()
               for n in zf.namelist() if n.endswith(".dcm")}
    assert got == bucket_files(bucket_server, study)
    assert sorted(p.name for p in tmp_path.iterdir()) == [z.name]      # the spool is gone


def test_manifest_csv_selects_series(bucket_server, demo_studies, tmp_path):
    study = demo_studies[1]
    chosen = sorted(study.series)[:2]
    manifest = tmp_path / "export.csv"
    manifest.write_text("PatientID,StudyInstanceUID,SeriesInstanceUID\n"
                        + "".join(f"p1,{study.study_uid},{s}\n" for s in chosen))
    out = tmp_path / "out"
    proc = run_cli("download", BUCKET, "--manifest", manifest, "--api-base", bucket_server.url, "--out", out)
    assert proc.returncode == 0, proc.stderr
    want = {k: v for k, v in bucket_files(bucket_server, study).items() if k.split("/")[1] in chosen}
    assert folder_files(out) == want and want


def test_usage_errors_name_what_is_wrong(bucket_server, tmp_path):
    cases = [
        (["download", BUCKET, "1.2.x", "--out", tmp_path], "study UID '1.2.x' is not a valid DICOM UID"),
        (["download", "ftp://host/b", "1.2.3", "--out", tmp_path], "ftp://host/b"),
        (["stats", BUCKET, "--manifest", tmp_path / "none.csv"], "none.csv"),
        (["stats", BUCKET], "no studies"),
        (["download", BUCKET, "1.2.3", "--out", tmp_path, "--concurrency", "0"], "--concurrency"),
    ]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("StudyInstanceUID\n1.2.3\nnot-a-uid\n")
    cases.append((["stats", BUCKET, "--manifest", bad_csv], "line 3: StudyInstanceUID 'not-a-uid'"))
    for args, message in cases:
        proc = run_cli(*args, "--api-base", bucket_server.url)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
    assert not list(tmp_path.rglob("*.dcm"))


def test_refused_token_is_refreshed_by_the_token_command(fresh_proxy, demo_studies, bucket_server, tmp_path):
    study = demo_studies[0]
    fresh_proxy.required_token = "fresh-token"
    calls = tmp_path / "calls"
    command = f"{sys.executable} -c \"open({str(calls)!r}, 'a').write('x'); print('fresh-token')\""
    out = tmp_path / "out"
    proc = run_cli("download", BUCKET, study.study_uid, "--api-base", fresh_proxy.url, "--out", out,
                   "--token-command", command, COD_RETRIEVE_TOKEN="stale-token")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert folder_files(out) == bucket_files(bucket_server, study)
    assert calls.read_text() == "x"                      # asked once, for all the refused requests
    auths = {s.auth for s in fresh_proxy.seen}
    assert auths == {"Bearer stale-token", "Bearer fresh-token"}

    # A token command that fails: the error names it; nothing saved, exit 3.
    failing = f"{sys.executable} -c \"import sys; sys.exit('no credentials')\""
    out2 = tmp_path / "out2"
    proc = run_cli("download", BUCKET, study.study_uid, "--api-base", fresh_proxy.url, "--out", out2,
                   "--token", "stale-token", "--token-command", failing)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "token command" in proc.stdout and "no credentials" in proc.stdout
    assert not list(out2.rglob("*.dcm"))


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(fresh_proxy, bucket_server, cohort_study, tmp_path):
    """The proxy holds the second series' tar half-way, so Ctrl-C certainly lands
    mid-study: the first series saved, the second in flight."""
    study = cohort_study
    first_series, second_series = sorted(study.series)
    release = threading.Event()
    hold = on_path(f"{second_series}.tar", Fault("hold", after=5_000_000, release=release), times=1, ranged=False)
    fresh_proxy.rules.append(hold)
    out = tmp_path / "out"
    with held_child(release, "download", BUCKET, study.study_uid, "--api-base", fresh_proxy.url,
                    "--out", out, "--concurrency", "1", "--json") as child:
        lines = []
        for line in child.stdout:       # the first series saved before the second's tar was asked for
            lines.append(json.loads(line))
            if lines[-1]["event"] == "series" and lines[-1]["status"] == "saved":
                break
        fresh_proxy.wait_until(lambda: hold.fired == 1, what="second tar held")
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    evts = lines + [json.loads(x) for x in rest.splitlines() if x.strip()]
    assert last(evts, "complete")["cancelled"] is True
    assert not list(out.rglob("*.part"))
    logged = set(json.loads((out / "log.json").read_text())["logs"])
    assert {f"{study.study_uid}/{first_series}/{sop}" for sop in study.series[first_series]} <= logged
    want = bucket_files(bucket_server, study)
    have = folder_files(out)
    assert all(want[k] == v for k, v in have.items())      # whatever is there is whole

    fresh_proxy.seen.clear()
    again = run_cli("download", BUCKET, study.study_uid, "--api-base", fresh_proxy.url, "--out", out, "--json")
    assert again.returncode == 0, again.stderr
    assert folder_files(out) == want
    tars = [s.path for s in fresh_proxy.seen if ".tar" in s.path]
    assert tars and all(second_series in p for p in tars)   # the saved series is not fetched again


def test_terminal_gets_a_bar_and_a_line_per_series(bucket_server, demo_studies, tmp_path):
    study = demo_studies[1]
    pid, fd = pty.fork()
    if pid == 0:   # the child: the command line on a terminal
        env = cli_env(COLUMNS="100")
        os.execve(sys.executable, cli_argv("download", BUCKET, study.study_uid, "--api-base", bucket_server.url,
                                           "--out", str(tmp_path)), env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "\r\x1b[2K[" in text and "#" in text                 # a bar, redrawn in place
    assert text.count("saved ") >= len(study.series)             # a line per series
    assert f"{len(study.series)} series saved, 0 failed" in text
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)


def test_installed_command(bucket_server, demo_studies, tmp_path):
    """`pip install ./py` gives a working `cod-retrieve` command."""
    target = tmp_path / "site"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(root / "py")], check=True, capture_output=True, timeout=300,
                   cwd=tmp_path)
    exe = target / "bin" / "cod-retrieve"
    env = dict(os.environ, PYTHONPATH=str(target))
    version = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("cod-retrieve "), version.stderr
    study = demo_studies[0]
    proc = subprocess.run([str(exe), "download", BUCKET, study.study_uid, "--api-base", bucket_server.url,
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert folder_files(tmp_path / "out") == bucket_files(bucket_server, study)


def test_a_download_that_cannot_fit_exits_4_before_fetching(bucket_server, demo_studies, tmp_path):
    """A real small disk (tmpfs): the command says how much is needed and free, exits 4
    (the disk is full), and writes nothing; with room it downloads."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        fx = demo_studies[1]                      # about 10 MB of DICOM
        proc = run_cli("download", BUCKET, fx.study_uid, "--out", mnt, "--api-base", bucket_server.url)
        assert proc.returncode == 4, (proc.stdout, proc.stderr)
        assert "not enough space: this download needs" in proc.stderr and f"the disk holding {mnt}" in proc.stderr
        assert list(mnt.iterdir()) == []
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        proc = run_cli("download", BUCKET, fx.study_uid, "--out", mnt, "--api-base", bucket_server.url)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert folder_files(mnt) == bucket_files(bucket_server, fx)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_layouts_and_manifest_from_the_command_line(bucket_server, demo_studies, tmp_path):
    """--layout media --write-manifest: a DICOMDIR pydicom reads back, listing files equal
    to the bucket's; a rerun fetches nothing; verify reads the folder's layout; a bad
    template and a second layout in the same folder are refused, naming why."""
    import csv
    import hashlib
    from pydicom.fileset import FileSet

    fx = demo_studies[0]
    want = sorted(bucket_files(bucket_server, fx).values())
    out = tmp_path / "media"
    first = run_cli("download", BUCKET, fx.study_uid, "--api-base", bucket_server.url, "--out", out,
                    "--layout", "media", "--write-manifest")
    assert first.returncode == 0, first.stdout + first.stderr
    fs = FileSet(out / "DICOMDIR")
    assert sorted(hashlib.sha256(Path(i.path).read_bytes()).hexdigest() for i in fs) == want
    rows = list(csv.DictReader((out / "cod-manifest.csv").open()))
    assert sorted(hashlib.sha256((out / r["Path"]).read_bytes()).hexdigest() for r in rows) == want

    again = run_cli("download", BUCKET, fx.study_uid, "--api-base", bucket_server.url, "--out", out,
                    "--layout", "media", "--json")
    assert again.returncode == 0 and last(events(again), "complete")["bytesDone"] == 0
    ok = run_cli("verify", BUCKET, fx.study_uid, "--api-base", bucket_server.url, "--out", out)
    assert ok.returncode == 0 and f"{len(want)} files match" in ok.stdout, ok.stdout + ok.stderr

    other = run_cli("download", BUCKET, fx.study_uid, "--api-base", bucket_server.url, "--out", out,
                    "--layout", "descriptive")
    assert other.returncode == 1 and "holds a download in the layout 'media'" in other.stderr
    bad = run_cli("download", BUCKET, fx.study_uid, "--api-base", bucket_server.url, "--out", tmp_path / "bad",
                  "--layout", "%PatientID/%Nonsense")
    assert bad.returncode == 2 and "%Nonsense is not a DICOM keyword" in bad.stderr
