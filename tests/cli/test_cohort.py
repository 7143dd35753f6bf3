"""Cohorts on a real Dask LocalCluster (2 worker processes on loopback) against
the real bucket server: one task per study, a report, and a worker killed
mid-study whose study is retried elsewhere and resumes from its log.json."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from support.cli import events, held_child, run_cli
from support.faultproxy import Fault, on_path
from support.files import bucket_files, folder_files

distributed = pytest.importorskip("distributed")

BUCKET = "gs://cod-demo/demo/dicomweb"
NO_SUCH_STUDY = "1.2.826.0.1.3680043.8.498.1"


def _manifest(path, uids) -> None:
    path.write_text("StudyInstanceUID,PatientID\n" + "".join(f"{u},p\n" for u in uids))


def _want(server, studies) -> dict:
    out = {}
    for s in studies:
        out.update(bucket_files(server, s))
    return out


def test_cohort_on_local_workers_reports_every_study(bucket_server, demo_studies, cohort_study, tmp_path):
    studies = [*demo_studies, cohort_study]
    manifest = tmp_path / "cohort.csv"
    _manifest(manifest, [s.study_uid for s in studies] + [NO_SUCH_STUDY])
    out = tmp_path / "out"
    proc = run_cli("cohort", BUCKET, "--manifest", manifest, "--api-base", bucket_server.url, "--out", out,
                   "--local-workers", "2", "--json", timeout=300)
    assert proc.returncode == 1, proc.stderr           # one study of four is not in the bucket
    have = {k: v for k, v in folder_files(out).items() if k != "cohort-report.json"}
    assert have == _want(bucket_server, studies)
    report = json.loads((out / "cohort-report.json").read_text())
    status = {o["study"]: o["status"] for o in report["studies"]}
    assert status == {**{s.study_uid: "saved" for s in studies}, NO_SUCH_STUDY: "failed"}
    assert report["saved"] == 3 and report["total"] == 4
    for s in studies:                                                   # one log.json per study
        logs = json.loads((out / s.study_uid / "log.json").read_text())["logs"]
        assert len(logs) == sum(len(v) for v in s.series.values())
    assert [e["event"] for e in events(proc)].count("study") == 4


def test_killed_worker_has_its_study_retried_and_resumed(fresh_proxy, bucket_server, demo_studies, cohort_study,
                                                         tmp_path):
    """The proxy holds one series tar of the big study half-way; the worker
    running that study is killed (SIGKILL); Dask runs the study again on a
    worker, which takes what the dead one saved from the folder and fetches
    the rest."""
    from distributed import Client, LocalCluster

    studies = [demo_studies[1], cohort_study]
    first, second = sorted(cohort_study.series)
    release = threading.Event()
    hold = on_path(f"{second}.tar", Fault("hold", after=5_000_000, release=release), times=1, ranged=False)
    fresh_proxy.rules.append(hold)
    manifest = tmp_path / "cohort.csv"
    _manifest(manifest, [s.study_uid for s in studies])
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with held_child(release, "cohort", BUCKET, "--manifest", manifest, "--api-base", fresh_proxy.url,
                        "--out", out, "--scheduler", cluster.scheduler_address, "--concurrency", "1",
                        "--json") as child:
            fresh_proxy.wait_until(lambda: hold.fired == 1, what="a tar of the big study held")
            key = f"cod-study-{cohort_study.study_uid}"
            where = [w for w, keys in client.processing().items() if key in keys]
            assert len(where) == 1
            pid = client.run(os.getpid, workers=where)[where[0]]
            os.kill(pid, signal.SIGKILL)
            stdout, stderr = child.communicate(timeout=240)
    assert child.returncode == 0, stderr
    have = {k: v for k, v in folder_files(out).items() if k != "cohort-report.json"}
    assert have == _want(bucket_server, studies)
    report = json.loads((out / "cohort-report.json").read_text())
    assert {o["study"]: o["status"] for o in report["studies"]} == {s.study_uid: "saved" for s in studies}
    big = next(o for o in report["studies"] if o["study"] == cohort_study.study_uid)
    assert big["alreadySavedInstances"] >= len(cohort_study.series[first])   # resumed, not started over
    assert not list(out.rglob("*.part"))
    held = [s for s in fresh_proxy.seen if s.path.split("?")[0].endswith(f"{second}.tar")]
    assert len(held) >= 2 and held[0].fault == "hold"            # the dead worker's request, then the retry's
    firsts = [s for s in fresh_proxy.seen if s.path.split("?")[0].endswith(f"{first}.tar")]
    assert len(firsts) == 1                                       # the series saved before the kill: not again
    assert [json.loads(x)["event"] for x in stdout.splitlines() if x.strip()].count("study") == 2
