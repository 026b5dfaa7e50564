"""Plain builders behind the conftest fixtures: small LFW-shaped data and a scripted HTTP server.

Kept out of conftest.py so tests and benchmarks can call them with their own parameters.
"""

from __future__ import annotations

import colorsys
import gzip
import http.server
import io
import tarfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw

DEFAULT_PEOPLE: Mapping[str, int] = MappingProxyType({"Alice_Doe": 6, "Bob_Roe": 5, "Carol_Poe": 4})

# --------------------------------------------------------------------------- LFW-shaped data


def make_lfw_tree(
    root: str | Path,
    people: Mapping[str, int] = DEFAULT_PEOPLE,
    size: int = 250,
    seed: int = 0,
) -> Path:
    """Write ``<root>/<Person>/<Person>_NNNN.jpg`` like LFW; return ``root``.

    Each person gets their own colour and shape near the centre (inside LFW's usual 128x128
    centre crop), jittered and noised per image, so a small CNN can learn to tell them apart
    while the same ``seed`` always gives the same pixels.
    """
    root = Path(root)
    for index, (person, count) in enumerate(people.items()):
        folder = root / person
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, index])
        for number in range(1, count + 1):
            image = _person_image(index, len(people), rng, size=size)
            image.save(folder / f"{person}_{number:04d}.jpg", format="JPEG", quality=90)
    return root


def _person_image(index: int, n_people: int, rng: np.random.Generator, *, size: int) -> Image.Image:
    """One synthetic face stand-in: person ``index``'s coloured shape on a noisy background."""
    grey = int(rng.integers(80, 140))
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    hue = index / max(n_people, 1)
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))
    centre = size / 2 + rng.uniform(-0.04, 0.04, size=2) * size
    radius = size * (0.12 + 0.02 * (index % 3)) * rng.uniform(0.9, 1.1)
    box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
    draw = ImageDraw.Draw(image)
    shape = index % 3
    if shape == 0:
        draw.ellipse(box, fill=colour)
    elif shape == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(box[0], box[3]), (centre[0], box[1]), (box[2], box[3])], fill=colour)
    noise = rng.integers(-24, 25, size=(size, size, 3), dtype=np.int16)
    pixels = (np.asarray(image, dtype=np.int16) + noise).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def make_lfw_archive(
    tree_root: str | Path, archive_path: str | Path, top: str = "lfw_funneled"
) -> Path:
    """Pack ``tree_root`` as ``<top>/<Person>/...`` into a .tgz like the published archives.

    Members are sorted and timestamps zeroed so the same tree always gives the same bytes
    (and the same checksum).
    """
    tree_root, archive_path = Path(tree_root), Path(archive_path)
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(archive_path, "wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_tar_dir(top))
        for path in sorted(tree_root.rglob("*")):
            name = f"{top}/{path.relative_to(tree_root).as_posix()}"
            if path.is_dir():
                tar.addfile(_tar_dir(name))
            else:
                data = path.read_bytes()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return archive_path


def _tar_dir(name: str) -> tarfile.TarInfo:
    """A folder entry with fixed metadata (mtime 0) for reproducible archives."""
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


# --------------------------------------------------------------------------- scripted server


@dataclass
class Route:
    """What the server answers on one path; ``hits`` counts the requests it received.

    ``fail_times`` answers ``fail_status`` that many times first; ``drop_times`` sends the
    headers and half the body, then closes (``None`` = every time); ``stall_times`` waits
    ``stall_s`` before answering, to trip client timeouts. All counts run over every hit, in
    the order stall, fail, drop. ``trickle_s`` sends a successful body one byte at a time,
    that many seconds apart (a server that never quite stops); ``content_type`` labels it.
    """

    body: bytes = b""
    status: int = 200
    fail_times: int = 0
    fail_status: int = 500
    drop_times: int | None = 0
    stall_times: int = 0
    stall_s: float = 0.0
    trickle_s: float = 0.0
    content_type: str = "application/octet-stream"
    hits: int = 0


class ScriptedServer:
    """A real ``ThreadingHTTPServer`` on 127.0.0.1 whose answers the test scripts per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def route(self, path: str, body: bytes = b"", **behaviour) -> str:
        """Script ``path`` (see :class:`Route` for ``behaviour``); return its URL."""
        with self._lock:
            self.routes[path] = Route(body=body, **behaviour)
        return self.url(path)

    def hits(self, path: str) -> int:
        with self._lock:
            route = self.routes.get(path)
            return route.hits if route else 0

    def next_action(self, path: str) -> tuple[str, Route | None]:
        """Count the hit and decide this request's answer: one of ok/fail/drop/stall/missing."""
        with self._lock:
            route = self.routes.get(path)
            if route is None:
                return "missing", None
            route.hits += 1
            hit = route.hits
            if hit <= route.stall_times:
                return "stall", route
            if hit <= route.fail_times:
                return "fail", route
            if route.drop_times is None or hit <= route.drop_times:
                return "drop", route
            return "ok", route


class _QuietServer(http.server.ThreadingHTTPServer):
    """Dropped and timed-out connections are the point of these tests: do not print them."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


def _make_handler(server: ScriptedServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            action, route = server.next_action(self.path)
            if action == "missing":
                self._answer(404, b"not found")
            elif action == "stall":
                time.sleep(route.stall_s)
                self._answer(route.status, route.body)
            elif action == "fail":
                self._answer(route.fail_status, b"scripted failure")
            elif action == "drop":
                self._answer(route.status, route.body[: len(route.body) // 2], len(route.body))
                self.close_connection = True
            elif route.trickle_s:
                self._trickle(route)
            else:
                self._answer(route.status, route.body, content_type=route.content_type)

        def _answer(
            self,
            status: int,
            body: bytes,
            length: int | None = None,
            content_type: str = "application/octet-stream",
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _trickle(self, route: Route) -> None:
            """Headers at once, then one byte every ``trickle_s`` until the client gives up."""
            self._answer(route.status, b"", len(route.body), content_type=route.content_type)
            for index in range(len(route.body)):
                time.sleep(route.trickle_s)
                self.wfile.write(route.body[index : index + 1])
                self.wfile.flush()

        def log_message(self, format: str, *args) -> None:
            pass

    return Handler
