"""A real Orthanc with the DICOMweb plugin on loopback: a DICOMweb server to download from.

Debian packages `orthanc` (1.10) and `orthanc-dicomweb` (1.7), listed in build.py's
APT_PACKAGES. Each test session starts its own Orthanc from a JSON configuration written
here: its own storage and index folders under a pytest tmp dir, an HTTP port found free
on 127.0.0.1, the DICOM server disabled, no authentication, remote access refused. The
system configuration (/etc/orthanc) and the system service are never used, so a packaged
Orthanc that happens to run (port 8042/4242, /var/lib/orthanc) does not clash with it.

Orthanc 1.10 has no option to choose the address it listens on: it binds its HTTP port on
every interface. So it runs in a network namespace of its own (`unshare --net`, where the
only interface is loopback) and a relay thread here listens on 127.0.0.1 (a free port) and
connects into that namespace (`setns` on the relay's dialing thread). Where namespaces are
not allowed (no CAP_SYS_ADMIN, no `ip`), Orthanc runs in the host's network with
`RemoteAccessAllowed: false`, answering loopback clients only (others get 403).

What this Orthanc does with QIDO-RS `limit` and `offset` (checked by
tests/dicomweb/test_orthanc_testbed.py):
  * both apply to the matches in one stable order, the order Orthanc stored them
    (upload order here), so consecutive windows `offset=k*n&limit=n` tile the full answer;
  * `offset` at or past the end gives `[]` with status 200;
  * `limit=0` means no limit (all matches);
  * a negative `limit` or `offset` gives 500, a non-number 400;
  * no response header tells that more matches exist: a client pages until a page
    comes back shorter than its limit.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable

from .bucket import _child_setup, find_free_port
from .childserver import ChildServer
from .nsrelay import NamespaceRelay

__all__ = ["OrthancServer", "find_orthanc", "start_orthanc", "upload_instances", "DICOMWEB_ROOT"]

DICOMWEB_ROOT = "/dicom-web/"
_PLUGIN_NAME = "libOrthancDicomWeb.so"


def find_orthanc() -> tuple[Path, Path] | None:
    """(Orthanc binary, DICOMweb plugin library), or None when either is not installed."""
    binary = shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(p, os.X_OK)), None)
    if binary is None:
        return None
    plugin = None
    try:   # where the Debian package put it
        listed = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True,
                                timeout=30).stdout.split()
        plugin = next((p for p in listed if Path(p).name.startswith(_PLUGIN_NAME) and Path(p).is_file()), None)
    except (OSError, subprocess.SubprocessError):
        pass
    if plugin is None:
        fallback = Path("/usr/share/orthanc/plugins") / _PLUGIN_NAME
        plugin = str(fallback) if fallback.is_file() else None
    if plugin is None:
        return None
    return Path(binary), Path(plugin)


class OrthancServer(ChildServer):
    """A running Orthanc. Use :func:`start_orthanc` to create one."""

    stop_timeout = 20.0     # SIGTERM lets Orthanc close its index cleanly

    def __init__(self, proc: subprocess.Popen, port: int, root: Path, log: Path, relay=None) -> None:
        super().__init__(proc, relay.port if relay is not None else port, root)
        self.log = log
        self.relay = relay          # NamespaceRelay: Orthanc's own network is a namespace of its own
        self.dicomweb = self.url + DICOMWEB_ROOT.rstrip("/")

    def _stopped_hook(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- HTTP --------------------------------------------------------------------
    def connect(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        """One request; returns (status, headers with lower-case names, body)."""
        conn = self.connect(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get_json(self, path: str, headers: dict | None = None):
        status, _, data = self.request("GET", path, headers={"Accept": "application/json", **(headers or {})})
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {data[:300]!r}")
        return json.loads(data)

    def upload(self, dicom: bytes) -> str:
        """Store one DICOM file through REST (`POST /instances`); returns its Orthanc id."""
        status, _, data = self.request("POST", "/instances", dicom, {"Content-Type": "application/dicom"})
        if status != 200:
            raise RuntimeError(f"POST /instances -> {status}: {data[:300]!r}")
        answer = json.loads(data)
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise RuntimeError(f"POST /instances: Orthanc answered {answer}")
        return answer["ID"]

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored file, byte for byte (`/instances/<id>/file`)."""
        status, _, data = self.request("GET", f"/instances/{orthanc_id}/file")
        if status != 200:
            raise RuntimeError(f"GET /instances/{orthanc_id}/file -> {status}")
        return data


def upload_instances(server: OrthancServer, files: Iterable[bytes | Path]) -> list[str]:
    """Upload DICOM files (bytes or paths) in order; their Orthanc instance ids, same order."""
    ids = []
    for f in files:
        ids.append(server.upload(f if isinstance(f, (bytes, bytearray)) else Path(f).read_bytes()))
    return ids


def _config(root: Path, port: int, plugin: Path) -> dict:
    return {
        "Name": "cod-retrieve-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "TemporaryDirectory": str(root / "tmp"),
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "HttpCompressionEnabled": False,   # bytes on the wire as stored
        "HttpThreadsCount": 8,
        "DicomServerEnabled": False,       # no DICOM port at all
        "DicomPort": 0,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "ExecuteLuaEnabled": False,
        "LuaScripts": [],
        "ConcurrentJobs": 1,
        "SaveJobs": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {
            "Enable": True,
            "Root": DICOMWEB_ROOT,
            "EnableWado": False,           # WADO-URI: not used
            "Ssl": False,
        },
    }


def start_orthanc(root: Path, timeout: float = 60) -> OrthancServer:
    """Start Orthanc with its own configuration and storage under `root`; returns once
    `GET /system` answers with the DICOMweb plugin loaded. Raises if Orthanc is missing."""
    found = find_orthanc()
    if found is None:
        raise RuntimeError("Orthanc or its DICOMweb plugin is not installed "
                           "(apt-get install orthanc orthanc-dicomweb; build.py lists them)")
    binary, plugin = found
    root = Path(root)
    for sub in ("storage", "index", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    last = ""
    isolate = namespaces_usable()
    for attempt in range(3):   # the free port can be taken between probe and bind
        port = 8042 if isolate else find_free_port()       # inside its own namespace every port is free
        config = root / "orthanc.json"
        config.write_text(json.dumps(_config(root, port, plugin), indent=2))
        log = root / f"orthanc-{attempt}.log"
        preexec = _child_setup if threading.current_thread() is threading.main_thread() else os.setsid
        cmd = [str(binary), str(config)]
        if isolate:       # unshare execs sh, sh execs Orthanc: one pid, whose namespace the relay enters
            cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *cmd]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=preexec, cwd=str(root))
        relay = None
        if isolate:
            relay = _relay_into(proc, port)
            if relay is None:
                proc.kill()
                proc.wait()
                last = "could not enter Orthanc's network namespace"
                continue
        server = OrthancServer(proc, port, root, log, relay)
        if _wait_ready(server, timeout):
            return server
        last = server.log_tail()
        server.stop()
    raise RuntimeError(f"Orthanc did not start; last log lines:\n{last}")


_NAMESPACES: bool | None = None


def namespaces_usable() -> bool:
    """Can a child get a network namespace of its own (root or CAP_SYS_ADMIN, and `ip`)?"""
    global _NAMESPACES
    if _NAMESPACES is None:
        try:
            _NAMESPACES = subprocess.run(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"],
                                         capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _NAMESPACES = False
    return _NAMESPACES


def _relay_into(proc: subprocess.Popen, port: int):
    """A relay from 127.0.0.1 here to `port` in the child's network namespace, once the
    child has its own (unshare runs first, then execs)."""
    own = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if os.stat(f"/proc/{proc.pid}/ns/net").st_ino != own:
                return NamespaceRelay(proc.pid, port)
        except OSError:
            pass
        time.sleep(0.01)
    return None


def _wait_ready(server: OrthancServer, timeout: float) -> bool:
    """Poll `/system` (and the plugin list) until both answer, the process dies, or time runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if not server.alive:
            return False
        try:
            status, _, data = server.request("GET", "/system", timeout=5)
            if status == 200 and json.loads(data).get("PluginsEnabled"):
                status, _, data = server.request("GET", "/plugins", timeout=5)
                if status == 200 and "dicom-web" in json.loads(data):
                    return True
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return False
