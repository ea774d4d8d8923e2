"""A loopback HTTP server that behaves like data.binance.vision, faults included.

Serves a directory written by `generate` over real HTTP so the downloader is
tested against a real socket: Content-Length, Last-Modified, 404 for months
not yet published, S3-style bucket listing. Faults from docs/reliability.md
(503 bursts, truncated bodies, stalls, bad or missing checksums) are switched
on per file, either in-process (`set_fault`) or over HTTP on the control
endpoint `/__mirror/faults`, so a server in another process can be steered.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import socket
import sys
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CONTROL_PREFIX = "/__mirror/"
CHECKSUM_SUFFIX = ".CHECKSUM"
S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
#: Fault kinds and the numeric parameters each accepts (all optional):
#: status -> status (default 503); truncate -> after_bytes (default half the
#: body); stall -> seconds (default 30) and after_bytes sent first (default 0).
FAULT_PARAMS: dict[str, dict[str, type]] = {
    "status": {"status": int},
    "truncate": {"after_bytes": int},
    "stall": {"seconds": float, "after_bytes": int},
    "wrong_checksum": {},
    "missing_checksum": {},
    "not_found": {},
}
_COPY_BLOCK = 1 << 20
_DEFAULT_STALL_SECONDS = 30.0
_POLL_SECONDS = 0.05  # how quickly stop() returns; the stdlib default of 0.5 s adds up in tests


@dataclass
class _Fault:
    """One armed fault; `remaining` None means it never runs out."""

    key: str
    kind: str
    remaining: int | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Body:
    """What a file request resolved to, before faults that shape the body apply."""

    data: bytes | None
    path: Path
    size: int
    mtime: float


class MirrorServer:
    """Serve `root` (a generated mirror) on loopback with per-file fault injection.

    Files are served at their path under root (`/data/spot/monthly/trades/...`);
    the S3 ListObjects listing answers at `/` and at `/{bucket}` (the real
    archive's path-style bucket URL). Thread-safe: tests arm faults and read
    stats while handler threads serve.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 1000,
        bucket: str = "data.binance.vision",
    ) -> None:
        self.root = Path(root).resolve()
        self.page_size = page_size
        self.bucket = bucket
        self._address = (host, port)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._log: list[tuple[str, str, int]] = []
        self._in_flight = 0
        self._max_concurrent = 0
        self._etags: dict[tuple[Path, int, int], str] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MirrorServer:
        """Bind and serve on a daemon thread; returns self for chaining."""
        if self._httpd is not None:
            raise RuntimeError("MirrorServer already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(_POLL_SECONDS,), name="mirror-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake stalled responses and drop open keep-alive connections."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # the client closed it first
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("MirrorServer not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ faults

    def set_fault(self, path_or_filename: str, kind: str, times: int | None = None, **params: Any) -> None:
        """Arm a fault for a URL path or a file basename.

        Faults on one file fire in the order they were armed; each request
        consumes at most one. `wrong_checksum`, `missing_checksum` and
        `not_found` may name the zip: they then act on its `.CHECKSUM` too.
        """
        if kind not in FAULT_PARAMS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_PARAMS)}")
        for name, value in params.items():
            expected = FAULT_PARAMS[kind].get(name)
            if expected is None:
                raise ValueError(f"fault {kind!r} takes no parameter {name!r}")
            if not _is_number(value, expected) or value < 0:
                raise ValueError(f"fault parameter {name} must be a non-negative {expected.__name__}, not {value!r}")
        if kind == "status" and not 100 <= params.get("status", 503) <= 599:
            raise ValueError(f"status must be an HTTP status code, not {params['status']!r}")
        if times is not None and (not _is_number(times, int) or times < 1):
            raise ValueError(f"times must be an int >= 1 or None (forever), not {times!r}")
        with self._lock:
            self._faults.append(_Fault(path_or_filename, kind, times, dict(params)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str, method: str) -> _Fault | None:
        """The first armed fault that applies to this request, with one use consumed."""
        own = {path, posixpath.basename(path)}
        zip_path = path[: -len(CHECKSUM_SUFFIX)] if path.endswith(CHECKSUM_SUFFIX) else None
        of_zip = {zip_path, posixpath.basename(zip_path)} if zip_path else set()
        with self._lock:
            for fault in self._faults:
                if not _applies(fault, own, of_zip, method):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _hidden(self, key: str) -> bool:
        """Whether a listing must omit `key` because it is armed as not yet published."""
        path = "/" + key
        own = {path, posixpath.basename(path)}
        zip_path = path[: -len(CHECKSUM_SUFFIX)] if path.endswith(CHECKSUM_SUFFIX) else path
        keys = own | {zip_path, posixpath.basename(zip_path)}
        with self._lock:
            return any(fault.kind == "not_found" and fault.key in keys for fault in self._faults)

    # ------------------------------------------------------------------ stats

    @property
    def request_log(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every served request except the control endpoint."""
        with self._lock:
            return list(self._log)

    def count(self, path_or_basename: str) -> int:
        """How many requests hit a URL path or a file basename."""
        with self._lock:
            return sum(1 for _, path, _ in self._log if path_or_basename in (path, posixpath.basename(path)))

    @property
    def max_concurrent(self) -> int:
        """Most .zip GETs ever in flight at once (for download concurrency limits)."""
        with self._lock:
            return self._max_concurrent

    def reset_stats(self) -> None:
        with self._lock:
            self._log.clear()
            self._max_concurrent = self._in_flight

    def stats(self) -> dict[str, Any]:
        """The stats as JSON-ready data (what `GET /__mirror/stats` returns)."""
        with self._lock:
            return {
                "requests": [list(entry) for entry in self._log],
                "max_concurrent": self._max_concurrent,
                "in_flight": self._in_flight,
            }

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._log.append((method, path, status))

    def _track(self, connection: socket.socket, open_: bool) -> None:
        """Remember open client sockets so `stop` can cut idle keep-alive connections."""
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _enter_zip_get(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_concurrent = max(self._max_concurrent, self._in_flight)

    def _leave_zip_get(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # ------------------------------------------------------------------ request handling

    def _handle(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._control(handler, method, url.path)
        elif method not in ("GET", "HEAD"):
            handler.close_connection = True  # the request body, if any, is left unread
            self._respond(handler, method, url.path, 405, b"method not allowed\n")
        elif url.path in ("/", f"/{self.bucket}", f"/{self.bucket}/"):  # like the real path-style bucket URL
            try:
                listing = self._listing(parse_qs(url.query))
            except ValueError as error:
                self._respond(handler, method, url.path, 400, f"bad listing query: {error}\n".encode())
                return
            self._respond(handler, method, url.path, 200, listing, "application/xml")
        elif method == "GET" and url.path.endswith(".zip"):
            self._enter_zip_get()
            try:
                self._file(handler, method, url.path)
            finally:
                self._leave_zip_get()
        else:
            self._file(handler, method, url.path)

    def _file(self, handler: _Handler, method: str, path: str) -> None:
        target = self._resolve(path)
        if target is None:
            self._respond(handler, method, path, 403, b"forbidden\n")
            return
        fault = self._take_fault(path, method)
        kind = fault.kind if fault else None
        if fault is not None and fault.kind == "status":
            status = int(fault.params.get("status", 503))
            self._respond(handler, method, path, status, f"injected {status}\n".encode())
            return
        if kind in ("not_found", "missing_checksum") or not target.is_file():
            self._respond(handler, method, path, 404, b"not found\n")
            return
        body = _read_body(target, wrong_checksum=kind == "wrong_checksum")
        self._send_head(handler, method, path, body)
        if method == "HEAD":
            return
        if fault is not None and fault.kind == "truncate":
            after = int(fault.params.get("after_bytes", body.size // 2))
            _copy(handler, body, 0, min(after, body.size))
            handler.close_connection = True
        elif fault is not None and fault.kind == "stall":
            after = min(int(fault.params.get("after_bytes", 0)), body.size)
            _copy(handler, body, 0, after)
            handler.wfile.flush()
            if self._stopping.wait(float(fault.params.get("seconds", _DEFAULT_STALL_SECONDS))):
                handler.close_connection = True
                return
            _copy(handler, body, after, body.size)
        else:
            _copy(handler, body, 0, body.size)

    def _resolve(self, url_path: str) -> Path | None:
        """Map a URL path inside root; None for anything that could escape it."""
        relative = unquote(url_path)
        parts = relative.split("/")
        if "\0" in relative or "\\" in relative or any(part in (".", "..") for part in parts):
            return None
        target = (self.root / relative.lstrip("/")).resolve()
        return target if target.is_relative_to(self.root) else None

    def _send_head(self, handler: _Handler, method: str, path: str, body: _Body) -> None:
        self._record(method, path, 200)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/zip" if path.endswith(".zip") else "text/plain")
        handler.send_header("Content-Length", str(body.size))
        handler.send_header("Last-Modified", formatdate(body.mtime, usegmt=True))
        handler.end_headers()

    def _respond(
        self, handler: _Handler, method: str, path: str, status: int, payload: bytes, content_type: str = "text/plain"
    ) -> None:
        if not path.startswith(CONTROL_PREFIX):
            self._record(method, path, status)
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(payload)

    def _control(self, handler: _Handler, method: str, path: str) -> None:
        """`/__mirror/faults` (POST arms, DELETE clears) and `/__mirror/stats` (GET, DELETE resets)."""
        if path == CONTROL_PREFIX + "faults" and method == "POST":
            length = int(handler.headers.get("Content-Length", "0"))
            try:
                spec = json.loads(handler.rfile.read(length) or b"{}")
                self.set_fault(spec.pop("path"), spec.pop("kind"), spec.pop("times", None), **spec)
            except (ValueError, KeyError, TypeError, AttributeError) as error:  # malformed JSON or spec
                self._respond(handler, method, path, 400, f"bad fault: {error}\n".encode())
                return
            self._respond(handler, method, path, 200, b'{"ok": true}', "application/json")
        elif path == CONTROL_PREFIX + "faults" and method == "DELETE":
            self.clear_faults()
            self._respond(handler, method, path, 200, b'{"ok": true}', "application/json")
        elif path == CONTROL_PREFIX + "stats" and method == "GET":
            self._respond(handler, method, path, 200, json.dumps(self.stats()).encode(), "application/json")
        elif path == CONTROL_PREFIX + "stats" and method == "DELETE":
            self.reset_stats()
            self._respond(handler, method, path, 200, b'{"ok": true}', "application/json")
        else:
            self._respond(handler, method, path, 404, b"unknown control endpoint\n")

    # ------------------------------------------------------------------ listing

    def _listing(self, query: dict[str, list[str]]) -> bytes:
        """S3 ListObjects (V1) XML: keys after `marker`, rolled up at `delimiter`, one page."""
        prefix = query.get("prefix", [""])[0]
        delimiter = query.get("delimiter", [""])[0]
        marker = query.get("marker", [""])[0]
        max_keys = min(int(query.get("max-keys", [str(self.page_size)])[0]), self.page_size)
        if max_keys < 1:
            raise ValueError("max-keys must be >= 1")

        entries: list[tuple[str, Path | None]] = []  # (key, file) or (common prefix, None)
        for key, path in self._keys(prefix):
            entry = _roll_up(key, path, prefix, delimiter)
            if entry[0] > marker and not (entries and entries[-1][0] == entry[0]):
                entries.append(entry)
        page, truncated = entries[:max_keys], len(entries) > max_keys

        result = ET.Element("ListBucketResult", xmlns=S3_NAMESPACE)
        for tag, text in (("Name", self.bucket), ("Prefix", prefix), ("Marker", marker)):
            ET.SubElement(result, tag).text = text
        if truncated:
            ET.SubElement(result, "NextMarker").text = page[-1][0]
        ET.SubElement(result, "MaxKeys").text = str(max_keys)
        if delimiter:
            ET.SubElement(result, "Delimiter").text = delimiter
        ET.SubElement(result, "IsTruncated").text = "true" if truncated else "false"
        for name, target in page:
            if target is not None:
                self._contents(result, name, target)
        for name, target in page:
            if target is None:
                ET.SubElement(ET.SubElement(result, "CommonPrefixes"), "Prefix").text = name
        return ET.tostring(result, encoding="utf-8", xml_declaration=True)

    def _keys(self, prefix: str) -> list[tuple[str, Path]]:
        """Sorted (key, path) of published files whose key starts with `prefix`."""
        directory = prefix.rpartition("/")[0]
        if any(part in (".", "..") for part in directory.split("/")):
            return []
        base = (self.root / directory).resolve()
        if not base.is_relative_to(self.root) or not base.is_dir():
            return []
        found: list[tuple[str, Path]] = []
        for folder, _, files in os.walk(base):
            for name in files:
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.endswith(".part") and not self._hidden(key):
                    found.append((key, path))
        return sorted(found)

    def _contents(self, result: ET.Element, key: str, path: Path) -> None:
        stat = path.stat()
        contents = ET.SubElement(result, "Contents")
        modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
        for tag, text in (
            ("Key", key),
            ("LastModified", modified.strftime("%Y-%m-%dT%H:%M:%S.") + f"{modified.microsecond // 1000:03d}Z"),
            ("ETag", f'"{self._etag(path, stat.st_size, stat.st_mtime_ns)}"'),
            ("Size", str(stat.st_size)),
            ("StorageClass", "STANDARD"),
        ):
            ET.SubElement(contents, tag).text = text

    def _etag(self, path: Path, size: int, mtime_ns: int) -> str:
        """Content MD5 like S3's single-part ETag, cached per (path, size, mtime)."""
        cache_key = (path, size, mtime_ns)
        with self._lock:
            cached = self._etags.get(cache_key)
        if cached is None:
            digest = hashlib.md5(usedforsecurity=False)
            with path.open("rb") as handle:
                while block := handle.read(_COPY_BLOCK):
                    digest.update(block)
            cached = digest.hexdigest()
            with self._lock:
                self._etags[cache_key] = cached
        return cached


def _is_number(value: Any, expected: type) -> bool:
    """int for int parameters, int or float for float ones; never bool (JSON true is not 1)."""
    allowed = (int, float) if expected is float else (int,)
    return isinstance(value, allowed) and not isinstance(value, bool)


def _roll_up(key: str, path: Path, prefix: str, delimiter: str) -> tuple[str, Path | None]:
    """A key as listed: itself, or its common prefix when the delimiter follows `prefix`."""
    rest = key[len(prefix) :]
    if delimiter and delimiter in rest:
        return prefix + rest[: rest.index(delimiter) + len(delimiter)], None
    return key, path


def _applies(fault: _Fault, own: set[str], of_zip: set[str], method: str) -> bool:
    """Whether `fault` shapes a request for a file named by `own` (and `of_zip` for a CHECKSUM)."""
    if fault.kind == "status":
        return fault.key in own
    if fault.kind == "not_found":
        return fault.key in own | of_zip
    if fault.kind in ("wrong_checksum", "missing_checksum"):
        return bool(of_zip) and fault.key in own | of_zip
    return method == "GET" and fault.key in own


def _read_body(path: Path, wrong_checksum: bool) -> _Body:
    """The file to send; a wrong checksum keeps the file name but replaces the digest."""
    stat = path.stat()
    if not wrong_checksum:
        return _Body(None, path, stat.st_size, stat.st_mtime)
    digest, _, name = path.read_text("ascii").partition("  ")
    data = f"{hashlib.sha256(digest.encode()).hexdigest()}  {name}".encode("ascii")
    return _Body(data, path, len(data), stat.st_mtime)


def _copy(handler: _Handler, body: _Body, start: int, end: int) -> None:
    """Send bytes [start, end) of the body."""
    if body.data is not None:
        handler.wfile.write(body.data[start:end])
        return
    with body.path.open("rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0 and (block := handle.read(min(_COPY_BLOCK, remaining))):
            handler.wfile.write(block)
            remaining -= len(block)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], mirror: MirrorServer) -> None:
        self.mirror = mirror
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (reset, broken pipe, timeout) is normal under retries and fault injection:
        no traceback on stderr for it. Anything else is still printed."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Thin adapter: HTTP/1.1 keep-alive, quiet, tolerant of clients that hang up."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.mirror._track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.mirror._track(self.connection, open_=False)
        super().finish()

    def _dispatch(self) -> None:
        try:
            self.server.mirror._handle(self, self.command)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence per-request stderr lines; `MirrorServer.request_log` records requests."""
