"""The pure core, unchanged, inside Pyodide (node and Chromium): the real
writer's sample tar and metadata go through the same code paths as in CPython."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_pyodide import run_in_pyodide

SAMPLES = Path("/work/shared/samples")
if not SAMPLES.exists():
    SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
TAR = SAMPLES / "series-1.2.826.0.1.3680043.8.498.11.tar"
META = SAMPLES / "series-metadata-v2.json"


@run_in_pyodide(packages=["cod-retrieve"])
def _check_sample(selenium, tar: bytes, meta: bytes, chunk: int):
    import gzip
    import json

    from cod_retrieve.crc32c import crc32c_update
    from cod_retrieve.metadata import decode_dicom_json, parse_series_metadata
    from cod_retrieve.spans import SpanReader
    from cod_retrieve.tarstream import MemberData, MemberEnd, MemberStart, TarReader
    from cod_retrieve.verify import check_instance

    doc = json.loads(meta)
    series = parse_series_metadata(gzip.compress(meta), doc["study_uid"], doc["series_uid"])
    by_member = series.by_member()
    attrs = decode_dicom_json(series.instances[0])
    assert isinstance(attrs, dict) and attrs, "v2 DICOM JSON decodes with compression.zstd"

    def run(reader, data):
        got, current, start = {}, None, {}
        for i in range(0, len(data), chunk):
            for ev in reader.feed(data[i:i + chunk]):
                if isinstance(ev, MemberStart):
                    current = ev.name
                    got[current] = bytearray()
                    start[current] = ev.offset
                elif isinstance(ev, MemberData):
                    got[current] += ev.data
                elif isinstance(ev, MemberEnd):
                    current = None
        return got, start

    got, start = run(TarReader(), tar)
    assert set(got) == set(by_member), (sorted(got), sorted(by_member))
    for name, data in got.items():
        inst = by_member[name]
        assert start[name] == inst.start_byte, (name, start[name], inst.start_byte)
        check_instance(inst, len(data), crc32c_update(0, data), bytes(data[:65536]))

    first = series.instances[0].start_byte
    spans, _ = run(SpanReader(series.instances[1:], series.instances[1].start_byte),
                   tar[series.instances[1].start_byte:])
    assert {k: bytes(v) for k, v in spans.items()} == {k: bytes(got[k]) for k in spans}
    return len(got), first


@run_in_pyodide(packages=["cod-retrieve"])
async def _job_on_memory(selenium, tar: bytes, meta: bytes):
    """A whole Job inside Pyodide, fed by an in-memory 'bucket' opener and
    written to an in-memory folder: the engine, not the adapters."""
    import json as _json

    from cod_retrieve.bucket import Bucket
    from cod_retrieve.http import Client
    from cod_retrieve.job import Job
    from cod_retrieve.journal import Journal
    from cod_retrieve.plan import make_plan
    from cod_retrieve.sinks import FolderSink

    doc = _json.loads(meta)
    study, series = doc["study_uid"], doc["series_uid"]
    bucket = Bucket("cod-bucket", "prefix/dicomweb", None, "http://bucket.invalid")
    listing = _json.dumps({"prefixes": [bucket.series_folder(study, series)]}).encode()
    objects = {bucket.list_url(study): listing, bucket.metadata_url(study, series): meta,
               bucket.tar_url(study, series): tar}

    class Resp:
        def __init__(self, body):
            self.status, self.headers, self._chunks = 200, {"content-length": str(len(body))}, [body[i:i + 4096] for i in range(0, len(body), 4096)]

        async def read(self):
            return self._chunks.pop(0) if self._chunks else None

        async def aclose(self):
            pass

    async def opener(url, headers):
        return Resp(objects[url])

    class MemWriter:
        def __init__(self, store, key):
            self.store, self.key, self.buf = store, key, bytearray()

        async def write(self, data):
            self.buf += data

        async def commit(self):
            self.store[self.key] = bytes(self.buf)

        async def abort(self):
            pass

    class MemFolder:
        name = "mem"

        def __init__(self):
            self.files = {}

        async def size(self, parts):
            v = self.files.get(tuple(parts))
            return None if v is None else len(v)

        async def sizes(self, parts):
            n = len(parts)
            return {k[n]: len(v) for k, v in self.files.items() if len(k) == n + 1 and k[:n] == tuple(parts)}

        async def read_bytes(self, parts, limit):
            return self.files.get(tuple(parts))

        async def iter_bytes(self, parts):
            yield self.files[tuple(parts)]

        async def create(self, parts):
            return MemWriter(self.files, tuple(parts))

        async def write_atomic(self, parts, data):
            self.files[tuple(parts)] = bytes(data)

        async def remove(self, parts):
            self.files.pop(tuple(parts), None)

        async def list(self, parts):
            n = len(parts)
            return sorted({k[n] for k in self.files if len(k) > n and k[:n] == tuple(parts)})

    folder = MemFolder()
    client = Client(opener)
    plan = await make_plan(client, bucket, [study])
    journal = Journal(folder)
    await journal.load()
    job = Job(plan, client, FolderSink(folder, journal))
    saves = []
    job.on_save(lambda p: saves.append(p["file"]["path"]))
    result = await job.start()
    assert result["failed"] == [], result
    logs = _json.loads(folder.files[("log.json",)])["logs"]
    return sorted(saves), len(logs), sum(len(v) for k, v in folder.files.items() if k[-1].endswith(".dcm"))


def test_sample_tar_and_metadata_in_pyodide(selenium):
    tar, meta = TAR.read_bytes(), META.read_bytes()
    for chunk in (1, 511, 4096, len(tar)):
        n, first = _check_sample(selenium, tar, meta, chunk)
        assert (n, first) == (3, 1536)


def test_job_engine_in_pyodide(selenium):
    tar, meta = TAR.read_bytes(), META.read_bytes()
    saves, n_logs, total = _job_on_memory(selenium, tar, meta)
    doc = json.loads(meta)
    assert n_logs == 3 and len(saves) == 3
    assert total == sum(i["size"] for i in doc["cod"]["instances"].values())
