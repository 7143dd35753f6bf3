#!/usr/bin/env python3
"""Build, serve and test cod-retrieve.

Run with the system ``python3`` (stdlib only at import time)::

    python3 build.py setup          # apt packages, .venv with pinned test tools, npm ci
    python3 build.py [site]         # assemble the static site into build/site/
    python3 build.py serve [--port N]   # site + serve it on 127.0.0.1, Ctrl-C stops
    python3 build.py demo  [--port N]   # setup + site + local bucket with real studies
    python3 build.py test [pytest args] # setup + site + all tests (CPython/e2e and Pyodide)

Every step is idempotent and skips work whose inputs did not change (stamp files in
``build/``, ``.venv/`` and ``node_modules/``).

Site layout (``build/site/``)::

    <everything in web/>
    pyodide/                 Pyodide core (npm pyodide) + shipped wheels + rewritten lock
      pyodide.mjs pyodide.js pyodide.asm.mjs pyodide.asm.wasm python_stdlib.zip
      pyodide-lock.json      only shipped wheels, sha256/version/imports/depends corrected
      micropip-*.whl packaging-*.whl pyodide_http-*.whl pydicom-*.whl cod_retrieve-*.whl
    crc32c.wasm              web/crc32c.wat assembled by wat2wasm (Debian's wabt)

Python code and tests can serve it with :func:`serve_site` (``import build`` with the repo
root on ``sys.path``; note that this shadows the PyPI ``build`` package there).
"""

from __future__ import annotations

import email.parser
import filecmp
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BUILD = ROOT / "build"
SITE = BUILD / "site"
WHEELS = BUILD / "wheels"
WEB = ROOT / "web"
PY = ROOT / "py"
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
NODE_MODULES = ROOT / "node_modules"
PYODIDE_NPM = NODE_MODULES / "pyodide"
REQUIREMENTS = ROOT / "requirements-test.txt"

APT_PACKAGES = ["chromium", "chromium-driver", "firefox-esr", "webkit2gtk-driver", "xvfb", "unzip",
                "xdotool", "imagemagick", "orthanc", "orthanc-dicomweb", "zip", "p7zip-full", "ffmpeg", "iproute2",
                "wabt"]

# Pure-Python wheels from PyPI shipped next to the Pyodide core: (name, version, sha256).
PYPI_WHEELS = [
    ("micropip", "0.11.1", "768de165adb8e66906039d8fec4127a57f522dfdf8e6fbff877a4616941ecfd3"),
    ("packaging", "26.1", "5d9c0669c6285e491e0ced2eee587eaf67b670d94a19e94e3984a481aba6802f"),
    ("pyodide-http", "0.2.2", "cf006ea593c1643b5badeb4d42ed24a6eebd830276171fa1f82de0777b3fb608"),
    ("pydicom", "3.0.2", "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b"),
]
# Files of the npm pyodide package that make up the runtime (the .d.ts are not needed).
PYODIDE_CORE = [
    "pyodide.mjs",
    "pyodide.mjs.map",
    "pyodide.js",  # the pytest-pyodide node runner loads this one
    "pyodide.js.map",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
]

# Files under py/ that are not sources of the project wheel.
_SOURCE_IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".pytest_cache", ".mypy_cache", ".ruff_cache"
)


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


def run(cmd: list, **kw) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def read_stamp(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- setup
def missing_apt_packages() -> list[str]:
    if not shutil.which("dpkg-query"):
        log("no dpkg-query (not Debian?): skipping apt packages")
        return []
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *APT_PACKAGES],
        capture_output=True,
        text=True,
    )
    installed = {
        line.split()[0].split(":")[0]
        for line in res.stdout.splitlines()
        if line.split()[1:] == ["installed"]
    }
    return [p for p in APT_PACKAGES if p not in installed]


def ensure_apt() -> None:
    missing = missing_apt_packages()
    if not missing:
        return
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            sys.exit(f"[build] missing apt packages {missing} and not root (no sudo)")
        prefix = ["sudo", "-E"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run([*prefix, "apt-get", "update"], env=env)
    run([*prefix, "apt-get", "install", "-y", *missing], env=env)


def ensure_venv() -> None:
    if not VENV_PY.exists():
        run([sys.executable, "-m", "venv", VENV])
    stamp_file = VENV / ".cod-retrieve-stamp"
    want = digest(REQUIREMENTS.read_bytes(), (PY / "pyproject.toml").read_bytes(), str(VENV_PY.resolve()))
    if read_stamp(stamp_file) == want:
        return
    pip = [VENV_PY, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "-q", "-r", REQUIREMENTS])
    # The project itself, editable, so CPython tests import the sources in py/.
    run([*pip, "install", "-q", "--no-deps", "--no-build-isolation", "-e", PY])
    stamp_file.write_text(want + "\n")


def ensure_node() -> None:
    stamp_file = NODE_MODULES / ".cod-retrieve-stamp"
    want = digest((ROOT / "package.json").read_bytes(), (ROOT / "package-lock.json").read_bytes())
    if read_stamp(stamp_file) == want and (PYODIDE_NPM / "pyodide.asm.wasm").exists():
        return
    if not shutil.which("npm"):
        sys.exit("[build] npm not found (node >= 20 and npm are needed)")
    run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT)
    stamp_file.write_text(want + "\n")


def setup(apt: bool = True) -> None:
    t = time.monotonic()
    if apt:
        ensure_apt()
    ensure_venv()
    ensure_node()
    log(f"setup ok ({time.monotonic() - t:.1f} s)")


# --------------------------------------------------------------------------- wheels
def _wheel_glob(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', name)}-{version}-*.whl"


def ensure_pypi_wheels() -> list[Path]:
    dest = WHEELS / "pypi"
    dest.mkdir(parents=True, exist_ok=True)

    def find(name: str, version: str, sha: str) -> Path | None:
        for p in dest.glob(_wheel_glob(name, version)):
            if sha256_file(p) == sha:
                return p
            log(f"{p.name}: sha256 mismatch, removing")
            p.unlink()
        return None

    missing = [f"{n}=={v}" for n, v, s in PYPI_WHEELS if find(n, v, s) is None]
    if missing:
        python = VENV_PY if VENV_PY.exists() else Path(sys.executable)
        run([python, "-m", "pip", "--disable-pip-version-check", "download", "-q", "--no-deps",
             "--python-version", "3.14", "--only-binary=:all:", "--platform", "any",
             "-d", dest, *missing])
    found = []
    for n, v, s in PYPI_WHEELS:
        p = find(n, v, s)
        if p is None:
            sys.exit(f"[build] could not get {n}=={v} with sha256 {s}")
        found.append(p)
    return found


def project_source_digest(src: Path = PY) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(src):
        ignored = _SOURCE_IGNORE(dirpath, dirnames + filenames)
        dirnames[:] = sorted(d for d in dirnames if d not in ignored)
        for fn in sorted(f for f in filenames if f not in ignored):
            p = Path(dirpath, fn)
            h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _project_wheel_tag(source_digest: str) -> str:
    # A wheel build tag must start with a digit.
    return "1" + source_digest[:10]


def ensure_project_wheel() -> Path:
    """The cod-retrieve wheel, built from a clean copy of py/ (no stale build/lib).

    Content-addressed: the file name carries a build tag from the source digest
    (``cod_retrieve-0.1.0-1<hash>-py3-none-any.whl``), so a page or test that loaded an
    older lock while py/ was edited and the site rebuilt still gets the wheel that matches
    its lock's sha256. Unchanged sources reuse the cached wheel.
    """
    dest = WHEELS / "project"
    dest.mkdir(parents=True, exist_ok=True)
    tag = _project_wheel_tag(project_source_digest())
    found = sorted(dest.glob(f"*-{tag}-*.whl"))
    if found:
        return found[0]
    t = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cod-wheel-") as tmp:
        src = Path(tmp, "src")
        shutil.copytree(PY, src, ignore=_SOURCE_IGNORE)
        tag = _project_wheel_tag(project_source_digest(src))  # what the wheel is built from
        out = Path(tmp, "out")
        run([VENV_PY, "-m", "pip", "--disable-pip-version-check", "wheel", "-q", "--no-deps",
             "--no-build-isolation", "--wheel-dir", out, src], cwd=tmp)
        built = sorted(out.glob("*.whl"))
        if len(built) != 1:
            sys.exit(f"[build] expected one wheel from py/, got {built}")
        dist, version, rest = built[0].name.split("-", 2)
        wheel = dest / f"{dist}-{version}-{tag}-{rest}"
        tmp_name = dest / f".{wheel.name}.tmp{os.getpid()}"
        shutil.move(str(built[0]), tmp_name)
        os.replace(tmp_name, wheel)
    _prune(list(dest.glob("*.whl")), keep=3)
    log(f"built {wheel.name} ({time.monotonic() - t:.1f} s)")
    return wheel


def _prune(paths: list[Path], keep: int) -> None:
    """Remove all but the ``keep`` most recently modified files."""
    for p in sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)[keep:]:
        p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- lock file
def _marker_environment(python: str) -> dict[str, str]:
    major_minor = ".".join(python.split(".")[:2])
    return {
        "implementation_name": "cpython",
        "implementation_version": python,
        "os_name": "posix",
        "platform_machine": "wasm32",
        "platform_release": "",
        "platform_system": "Emscripten",
        "platform_version": "",
        "platform_python_implementation": "CPython",
        "python_full_version": python,
        "python_version": major_minor,
        "sys_platform": "emscripten",
        "extra": "",
    }


def _requirement_applies(marker: str, env: dict[str, str]) -> bool:
    if not marker.strip():
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # system python: pip vendors packaging
        from pip._vendor.packaging.markers import Marker  # type: ignore
    return Marker(marker).evaluate(env)


def wheel_lock_entry(path: Path, env: dict[str, str]) -> dict:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        meta = email.parser.Parser().parsestr(z.read(f"{dist_info}/METADATA").decode())
        if f"{dist_info}/top_level.txt" in names:
            imports = [s for s in z.read(f"{dist_info}/top_level.txt").decode().split() if s]
        else:
            imports = set()
            for n in names:
                top = n.split("/")[0]
                if top.endswith((".dist-info", ".data")):
                    continue
                if "/" in n:
                    imports.add(top)
                elif top.endswith(".py"):
                    imports.add(top[:-3])
            imports = sorted(imports)
    depends = []
    for req in meta.get_all("Requires-Dist") or []:
        spec, _, marker = req.partition(";")
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1)
        if _requirement_applies(marker, env) and canonical(name) not in depends:
            depends.append(canonical(name))
    return {
        "name": canonical(meta["Name"]),
        "version": meta["Version"],
        "file_name": path.name,
        "install_dir": "site",
        "sha256": sha256_file(path),
        "package_type": "package",
        "imports": sorted(imports),
        "depends": depends,
        "unvendored_tests": False,
        "tool": {},
    }


def rewrite_lock(wheels: list[Path]) -> dict:
    """Pyodide's lock restricted to the shipped wheels, with their real metadata."""
    lock = json.loads((PYODIDE_NPM / "pyodide-lock.json").read_text())
    env = _marker_environment(lock["info"]["python"])
    packages = {}
    for w in wheels:
        entry = wheel_lock_entry(w, env)
        base = dict(lock["packages"].get(entry["name"], {}))
        base.update(entry)
        packages[entry["name"]] = base
    for name, entry in packages.items():
        missing = [d for d in entry["depends"] if d not in packages]
        if missing:
            sys.exit(f"[build] {name} depends on {missing}, which are not shipped in the site")
    lock["packages"] = dict(sorted(packages.items()))
    return lock


# --------------------------------------------------------------------------- site
def build_site() -> Path:
    """Assemble build/site/ (see the module docstring). Returns SITE."""
    t = time.monotonic()
    ensure_venv()
    ensure_node()
    wheels = ensure_pypi_wheels() + [ensure_project_wheel()]

    # What build/site must hold: relative path -> source file or bytes.
    plan: dict[str, Path | bytes] = {}
    if WEB.is_dir():
        for p in sorted(WEB.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".swp", "~")):
                if p.suffix == ".wat":      # WebAssembly text: the site gets the module
                    plan[p.relative_to(WEB).with_suffix(".wasm").as_posix()] = assemble_wat(p)
                else:
                    plan[p.relative_to(WEB).as_posix()] = p
    for reserved in ("pyodide/",):
        if any(k.startswith(reserved) for k in plan):
            log(f"warning: web/{reserved} is replaced by the build")
            plan = {k: v for k, v in plan.items() if not k.startswith(reserved)}
    for name in PYODIDE_CORE:
        plan[f"pyodide/{name}"] = PYODIDE_NPM / name
    for w in wheels:
        plan[f"pyodide/{w.name}"] = w
    lock = rewrite_lock(wheels)
    plan["pyodide/pyodide-lock.json"] = (json.dumps(lock, indent=1) + "\n").encode()
    # Keep the two previous project wheels: a page that loaded an older lock can still
    # fetch the wheel its lock names.
    own = wheels[-1]
    older = [p for p in (SITE / "pyodide").glob(f"{own.name.split('-')[0]}-*.whl") if p.name != own.name]
    for p in sorted(older, key=lambda p: p.stat().st_mtime, reverse=True)[:2]:
        plan[f"pyodide/{p.name}"] = p
    _sync_tree(SITE, plan)
    log(f"site ok: {SITE} ({time.monotonic() - t:.1f} s)")
    return SITE


def assemble_wat(source: Path) -> bytes:
    """A WebAssembly text file as a module, by wat2wasm (apt package wabt)."""
    if shutil.which("wat2wasm") is None:
        sys.exit(f"[build] wat2wasm (apt package wabt) is needed to assemble {source.name}: python3 build.py setup")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "module.wasm"
        subprocess.run(["wat2wasm", str(source), "-o", str(out)], check=True)
        return out.read_bytes()


def _sync_tree(root: Path, plan: dict[str, Path | bytes]) -> None:
    """Make ``root`` hold exactly ``plan``, in place: unchanged files are not touched,
    changed ones are replaced atomically, the folders keep their identity (a server that
    chdir'ed into build/site/pyodide, like pytest-pyodide's, keeps working)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, src in plan.items():
        dst = root / rel
        for parent in reversed(Path(rel).parents[:-1]):
            if (root / parent).is_file():
                (root / parent).unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir():
            shutil.rmtree(dst)
        if isinstance(src, bytes):
            if dst.is_file() and dst.stat().st_size == len(src) and dst.read_bytes() == src:
                continue
        elif src.resolve() == dst.resolve():
            continue
        elif dst.is_file() and dst.stat().st_size == src.stat().st_size and filecmp.cmp(src, dst, shallow=False):
            continue
        tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
        if isinstance(src, bytes):
            tmp.write_bytes(src)
        else:
            shutil.copyfile(src, tmp)  # fresh mtime: Last-Modified changes with the content
        os.replace(tmp, dst)
    keep = {root / rel for rel in plan}
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for fn in filenames:
            p = Path(dirpath, fn)
            if p not in keep and not fn.startswith("."):  # dot files: another build's temp
                p.unlink(missing_ok=True)
        if Path(dirpath) != root and not os.listdir(dirpath):
            os.rmdir(dirpath)


# --------------------------------------------------------------------------- server
class SiteHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        "": "application/octet-stream",
        ".html": "text/html; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".json": "application/json",
        ".map": "application/json",
        ".wasm": "application/wasm",
        ".whl": "application/zip",
        ".zip": "application/zip",
        ".tar": "application/x-tar",
        ".dcm": "application/dicom",
        ".svg": "image/svg+xml",
        ".ts": "text/plain; charset=utf-8",
    }

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def _viewer_route(self) -> None:
        # The viewer route download/<bucket>/<prefix...>: every path under it gets
        # download.html (on a static host: a rewrite rule /download/* -> /download.html).
        if self.path.split("?", 1)[0].startswith("/download/"):
            self.path = "/download.html"

    def do_GET(self) -> None:
        self._viewer_route()
        super().do_GET()

    def do_HEAD(self) -> None:
        self._viewer_route()
        super().do_HEAD()

    def do_OPTIONS(self) -> None:  # CORS preflight
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args) -> None:  # quiet
        pass


class SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the browser went away mid-response
        super().handle_error(request, client_address)


def serve_site(root: Path = SITE, port: int = 0) -> tuple[SiteServer, str]:
    """Serve ``root`` on 127.0.0.1 in a daemon thread.

    Returns ``(server, url)``; ``url`` has no trailing slash (``http://127.0.0.1:PORT``).
    Stop with ``server.shutdown(); server.server_close()``.
    """
    handler = functools.partial(SiteHandler, directory=str(root))
    server = SiteServer(("127.0.0.1", port), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.url = url  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="site-server", daemon=True).start()
    return server, url


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _wait_forever() -> None:
    """Block until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _port_arg(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == "--port" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--port="):
            return int(a.split("=", 1)[1])
    return 0


# --------------------------------------------------------------------------- commands
def cmd_serve(argv: list[str]) -> int:
    build_site()
    server, url = serve_site(SITE, _port_arg(argv))
    print(f"{url}/", flush=True)
    _wait_forever()
    server.shutdown()
    server.server_close()
    return 0


def _reexec_in_venv(argv: list[str]) -> None:
    if not in_venv():
        os.environ["COD_BUILD_SETUP_DONE"] = "1"
        os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *argv])


def cmd_demo(argv: list[str]) -> int:
    if not os.environ.get("COD_BUILD_SETUP_DONE"):
        setup()
        build_site()
    _reexec_in_venv(["demo", *argv])
    sys.path.insert(0, str(ROOT))
    from tests.support.bucket import start_bucket_server
    from tests.support.studies import write_demo_studies

    bucket_server = start_bucket_server()
    site_server = None
    try:
        log(f"bucket server at {bucket_server.url}; writing demo studies")
        studies = write_demo_studies(bucket_server)
        if not studies:
            sys.exit("[build] write_demo_studies returned no studies")
        first = studies[0]
        same = [s for s in studies if (s.bucket, s.datastore) == (first.bucket, first.datastore)]
        for s in studies:
            if s not in same:
                log(f"note: study {s.study_uid} is in gs://{s.bucket}/{s.datastore}, not in the URL")
        site_server, url = serve_site(SITE, _port_arg(argv))
        query = [("api", bucket_server.url), ("bucket", first.bucket), ("prefix", first.datastore)]
        query += [("StudyInstanceUIDs", s.study_uid) for s in same]
        print(f"{url}/?{urllib.parse.urlencode(query)}", flush=True)
        log("Ctrl-C stops the site and the bucket server")
        _wait_forever()
    finally:
        if site_server is not None:
            site_server.shutdown()
            site_server.server_close()
        bucket_server.stop()
    return 0


def _has_tests(path: Path) -> bool:
    return any(path.rglob("test_*.py")) or any(path.rglob("*_test.py"))


def cmd_test(argv: list[str]) -> int:
    """All tests, in two pytest runs.

    1. ``tests/`` without ``tests/pyodide``: CPython, testbed and browser end-to-end tests,
       with the pytest-pyodide plugin disabled.
    2. ``tests/pyodide`` with pytest-pyodide on the built ``build/site/pyodide``, runtimes
       from ``$COD_PYODIDE_RT`` (default ``node,chrome``), runner ``$COD_PYODIDE_RUNNER``
       (default ``selenium`` with Debian's chromium and chromedriver; ``playwright`` works too).

    Extra arguments go to both runs; arguments that are existing paths are routed to the
    run they belong to (a run with no selected path is skipped). Exit code: the first
    failing run's; pytest's 5 (no tests collected) is reported, and is the result only when
    no run collected anything.
    """
    t0 = time.monotonic()
    setup()
    build_site()
    t_setup = time.monotonic() - t0

    pyodide_dir = ROOT / "tests" / "pyodide"
    paths_main, paths_pyo, opts = [], [], []
    for a in argv:
        p = (ROOT / a.split("::")[0]) if not a.startswith("-") else None
        if p is not None and p.exists():
            rp = p.resolve()
            (paths_pyo if rp == pyodide_dir or pyodide_dir in rp.parents else paths_main).append(a)
        else:
            opts.append(a)
    selected = bool(paths_main or paths_pyo)

    env = dict(os.environ, SE_OFFLINE="true", SE_AVOID_STATS="true", PYTHONUNBUFFERED="1")
    pytest = [str(VENV_PY), "-m", "pytest"]
    runs = []
    if not selected or paths_main:
        runs.append(("cpython+e2e", [*pytest, "-p", "no:pytest_pyodide", "-p", "no:pytest_pyodide_hook",
                                     # hypothesis (a pytest-pyodide dependency) parses source in its
                                     # terminal summary; after Playwright's greenlets, CPython 3.11's
                                     # compiler can fail there ("AST constructor recursion depth
                                     # mismatch"). These tests do not use it.
                                     "-p", "no:hypothesispytest",
                                     *(paths_main or ["tests", f"--ignore={pyodide_dir.relative_to(ROOT)}"]),
                                     *opts]))
    if not selected or paths_pyo:
        pyo_opts = [f"--dist-dir={SITE / 'pyodide'}"]
        if not any(o.startswith(("--rt", "--runtime")) for o in opts):
            pyo_opts.append(f"--rt={os.environ.get('COD_PYODIDE_RT', 'node,chrome')}")
        if not any(o.startswith("--runner") for o in opts):
            pyo_opts.append(f"--runner={os.environ.get('COD_PYODIDE_RUNNER', 'selenium')}")
        runs.append(("pyodide", [*pytest, *(paths_pyo or [str(pyodide_dir.relative_to(ROOT))]), *pyo_opts, *opts]))

    results = []
    for name, cmd in runs:
        log(f"--- {name}: " + " ".join(cmd[1:]))
        t = time.monotonic()
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        results.append((name, rc, time.monotonic() - t))

    log(f"--- summary (setup+site {t_setup:.1f} s)")
    for name, rc, dt in results:
        note = {0: "passed", 5: "NO TESTS COLLECTED"}.get(rc, "FAILED")
        log(f"  {name:12s} exit {rc} {note} ({dt:.1f} s)")
    log(f"  total {time.monotonic() - t0:.1f} s")
    failed = [rc for _, rc, _ in results if rc not in (0, 5)]
    if failed:
        return failed[0]
    if results and all(rc == 5 for _, rc, _ in results):
        log("no tests were collected at all")
        return 5
    for name, rc, _ in results:
        if rc == 5 and not argv:
            has = _has_tests(pyodide_dir) if name == "pyodide" else any(
                pyodide_dir not in p.parents for p in (ROOT / "tests").rglob("test_*.py"))
            if has:
                log(f"{name}: test files exist but none were collected")
                return 5
            log(f"warning: {name}: no test files yet")
    return 0


def main(argv: list[str]) -> int:
    cmd, rest = (argv[0], argv[1:]) if argv else ("site", [])
    if cmd == "setup":
        setup()
    elif cmd == "site":
        build_site()
    elif cmd == "serve":
        return cmd_serve(rest)
    elif cmd == "demo":
        return cmd_demo(rest)
    elif cmd == "test":
        return cmd_test(rest)
    elif cmd in ("-h", "--help", "help"):
        print(__doc__)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
