"""Real servers on 127.0.0.1 for the acquisition tests: an HTTP file server that honours
Range requests (as S3/Azure do for cloud-optimised GeoTIFFs) with switches for failures and
slowness, and a STAC API (`rustac serve`, in-memory backend) loaded with item JSON."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RangeHandler(SimpleHTTPRequestHandler):
    """GET/HEAD with single byte ranges; counts bytes; can fail or stall on demand."""

    def log_message(self, *args):  # quiet
        pass

    def _fault(self) -> bool:
        srv = self.server
        with srv.lock:
            srv.requests += 1
            query = urllib.parse.urlsplit(self.path).query
            if query:
                srv.queries.add(query)
            if srv.fail_next > 0:
                srv.fail_next -= 1
                code = srv.fail_code
            else:
                code = None
        if srv.delay:
            time.sleep(srv.delay)
        if code:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        return False

    def _file(self):
        """The requested file, or None after answering with the failure or a 404."""
        if self._fault():
            return None
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        return path

    def do_HEAD(self):  # noqa: N802 (http.server API)
        path = self._file()
        if path is None:
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):  # noqa: N802 (http.server API)
        path = self._file()
        if path is None:
            return
        size = path.stat().st_size
        m = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        start, end = 0, size - 1
        status = HTTPStatus.OK
        if m:
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
            else:  # suffix range
                start = max(size - int(m.group(2)), 0)
            end = min(end, size - 1)
            if start > end:
                self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                return
            status = HTTPStatus.PARTIAL_CONTENT
        with path.open("rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.write(data)
        with self.server.lock:
            self.server.bytes_sent += len(data)
            self.server.per_file[path.name] = self.server.per_file.get(path.name, 0) + len(data)


def clear_gdal_http_cache() -> None:
    """Empty the /vsicurl/ cache of the GDAL that rasterio uses in this process (it persists
    between reads). rasterio has no call for it, so the C function of the libgdal its wheel
    bundles is called by hand. In the QGIS tiers the reads happen in the engine process and
    there is nothing to clear here."""
    import ctypes
    import glob
    import importlib.util
    spec = importlib.util.find_spec("rasterio")
    if spec is None or spec.origin is None:
        return
    site = Path(spec.origin).parent.parent
    libs = glob.glob(str(site / "rasterio.libs" / "libgdal*.so*"))
    if libs:
        ctypes.CDLL(libs[0]).VSICurlClearCache()


class RangeServer:
    """Serves `root` on 127.0.0.1; `url` is its base address."""

    def __init__(self, root):
        self.root = Path(root)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.reset()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def reset(self, fail_next=0, fail_code=500, delay=0.0):
        """Counters to zero, new failure plan; GDAL's /vsicurl/ cache is emptied so that the
        next reads really reach this server."""
        clear_gdal_http_cache()
        h = self.httpd
        h.fail_next, h.fail_code, h.delay = fail_next, fail_code, delay
        h.requests, h.bytes_sent, h.per_file, h.queries = 0, 0, {}, set()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class StacApi:
    """`rustac serve` with an in-memory backend, loaded with item collection files."""

    def __init__(self, hrefs):
        venv = Path(os.environ.get("VENV", Path(__file__).resolve().parent.parent / ".venv"))
        exe = shutil.which("rustac") or next((str(p) for p in (Path(os.sys.executable).parent / "rustac",
                                                              venv / "bin" / "rustac") if p.exists()), "rustac")
        if not Path(exe).exists():
            raise RuntimeError("rustac not found: run `make setup`")
        self.port = free_port()
        self.proc = subprocess.Popen([exe, "serve", "--addr", f"127.0.0.1:{self.port}",
                                      "--create-collections", *map(str, hrefs)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=1) as r:
                    json.load(r)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode())
                time.sleep(0.2)
        raise RuntimeError("rustac serve did not start")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextlib.contextmanager
def served_items(root, build):
    """The files under `root` behind a RangeServer and the item files that `build(files)`
    writes (it gets the server for its URLs) behind `rustac serve`: (files, api)."""
    with RangeServer(root) as files:
        api = StacApi(build(files))
        try:
            yield files, api
        finally:
            api.close()


class DaskCluster:
    """A real `dask scheduler` and `dask worker` processes of the engine's environment on
    127.0.0.1, each in its own process group (a test can kill one, nanny and all)."""

    def __init__(self, folder, workers: int = 2, threads: int = 1, env=None):
        venv = Path(os.environ.get("VENV", Path(__file__).resolve().parent.parent / ".venv"))
        self.dask = str(venv / "bin" / "dask")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("PYTHONPATH", None)  # workers import the engine as installed (pip -e)
        self.port = free_port()
        self.scheduler = self._start([self.dask, "scheduler", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--no-dashboard"], "scheduler")
        self.workers = []
        try:
            self.workers = [self.add_worker(threads) for _ in range(workers)]
            if workers:
                self.wait_for(workers)
        except BaseException:  # no scheduler or worker outlives a failed start
            self.close()
            raise

    def _start(self, argv, name):
        log = open(self.folder / f"{name}-{time.monotonic_ns()}.log", "w")
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.folder, start_new_session=True)

    def add_worker(self, threads: int = 1, resources: str | None = None):
        proc = self._start([self.dask, "worker", self.address, "--nthreads", str(threads),
                            "--no-dashboard", "--memory-limit", "4GB", "--local-directory", str(self.folder),
                            *(["--resources", resources] if resources else [])], "worker")
        return proc

    def wait_for(self, n: int, timeout: float = 90):
        """Until n workers are connected, asked by a client in the engine's interpreter (so
        that QGIS's Python, which has no dask, can start a cluster too)."""
        code = (f"from distributed import Client; c = Client({self.address!r}, timeout=30); "
                f"c.wait_for_workers({n}, timeout={timeout}); c.close()")
        subprocess.run([str(Path(self.dask).with_name("python")), "-c", code], check=True,
                       capture_output=True, timeout=timeout + 60)

    @property
    def address(self):
        return f"tcp://127.0.0.1:{self.port}"

    @staticmethod
    def kill(proc):
        """SIGKILL the process group: the worker and its nanny die with no goodbye."""
        import signal
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def close(self):
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                import signal
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
