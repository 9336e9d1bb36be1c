"""Calling a function over HTTP the way CVAT does, for ``check``, ``bench`` and ``annotate``.

CVAT posts ``{"image": "<base64 of the frame file>"}`` (plus ``threshold`` when the user set
one) as ``application/json``; :class:`HttpFunction` does exactly that with the standard
library, measures the round trip, and turns network failures into one-line
:class:`FunctionError` messages. Test images are read as files and sent as they are, the way
CVAT sends frames.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from quadratseg_handlers.core.messages import last_line
from quadratseg_handlers.core.request import cvat_request
from quadratseg_handlers.core.runtime import WARNING_HEADER
from quadratseg_handlers.cvat.spec import LabelSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


class FunctionError(Exception):
    """The function could not be called (bad URL, unreachable, timed out): one line."""


@dataclass
class Answer:
    """One HTTP answer: status, content type, raw body, the round-trip time in seconds, and
    the function's warnings about the request (why an answer is empty; "" without)."""

    status: int
    content_type: str
    body: bytes
    seconds: float
    warning: str = ""

    def json(self) -> Any:
        """The decoded JSON body (ValueError when it is not JSON)."""
        return json.loads(self.body.decode("utf-8"))

    def error_text(self) -> str:
        """The ``error`` field of a JSON error body, else the body's last line."""
        try:
            payload = self.json()
        except (ValueError, UnicodeDecodeError):
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            return payload["error"]
        text = self.body.decode("utf-8", errors="replace").strip()
        return last_line(text, 200, "(empty body)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpFunction:
    """A deployed (or locally served) function at ``url``."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise FunctionError(f"--function-url must be an http(s) URL, got {url!r}")
        self.url = url
        self.timeout = timeout
        # A machine-wide proxy must not capture calls to a function on this machine.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(parsed.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)

    def _url(self, path: str) -> str:
        return urllib.parse.urljoin(self.url if self.url.endswith("/") else self.url + "/", path)

    def request(
        self, url: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> Answer:
        """One request (POST when there is a body); any HTTP status is an Answer."""
        headers = {"Content-Type": content_type} if body is not None else {}
        req = urllib.request.Request(url, data=body, headers=headers)
        started = time.perf_counter()
        try:
            with self._opener.open(req, timeout=self.timeout) as response:
                data = response.read()
                status = response.status
                kind = response.headers.get("Content-Type", "")
                warning = response.headers.get(WARNING_HEADER, "")
        except urllib.error.HTTPError as exc:
            data = exc.read()
            status = exc.code
            kind = exc.headers.get("Content-Type", "") if exc.headers else ""
            warning = ""
        except urllib.error.URLError as exc:
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
            if isinstance(exc.reason, TimeoutError):
                reason = f"no answer within {self.timeout:.0f} s"
            raise FunctionError(f"cannot reach {url}: {reason}") from None
        except TimeoutError:
            raise FunctionError(f"no answer from {url} within {self.timeout:.0f} s") from None
        except (ConnectionError, OSError) as exc:
            raise FunctionError(f"connection to {url} failed: {exc.strerror or exc}") from None
        return Answer(status, kind, data, time.perf_counter() - started, warning)

    def post(self, body: bytes, content_type: str = "application/json") -> Answer:
        """POST a raw body to the function."""
        return self.request(self.url, body, content_type)

    def post_json(self, payload: Any) -> Answer:
        """POST a JSON payload, as CVAT does."""
        return self.post(json.dumps(payload).encode("utf-8"))

    def _server_info(self, path: str) -> Any:
        """JSON that ``quadratseg serve`` answers on a GET path; None from other servers."""
        answer = self.request(self._url(path))
        if answer.status != 200:
            return None
        try:
            return answer.json()
        except (ValueError, UnicodeDecodeError):
            return None

    def labels(self) -> list[LabelSpec] | None:
        """The label spec from ``quadratseg serve``'s ``GET /spec``; None for other servers.

        Raises FunctionError when the server cannot be reached at all.
        """
        spec = self._server_info("spec")
        if isinstance(spec, list) and all(
            isinstance(label, dict) and "name" in label for label in spec
        ):
            return spec
        return None

    def name(self) -> str | None:
        """The function name from ``quadratseg serve``'s ``GET /health``; None for others."""
        health = self._server_info("health")
        name = health.get("function") if isinstance(health, dict) else None
        return name if isinstance(name, str) else None


def image_files(folder: str | Path) -> list[Path]:
    """The images of a test folder, sorted by name; FunctionError when there are none."""
    path = Path(folder)
    if not path.is_dir():
        raise FunctionError(f"{path}: not a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FunctionError(
            f"{path}: no images (looked for {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)})"
        )
    return files


def image_size_wh(path: Path) -> tuple[int, int]:
    """(width, height) of an image as the function sees it: EXIF orientation applied."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise FunctionError(f"{path}: not a readable image ({exc})") from None
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def request_body(path: Path, threshold: float | None = None) -> bytes:
    """The JSON body CVAT would send for this image file."""
    return json.dumps(cvat_request(path, threshold)).encode("utf-8")
