"""The model contract: what a QUADRATSEG function is, apart from how Nuclio calls it.

A function is a class that describes its model and nothing else:

- ``settings``: its typed settings (a :class:`~quadratseg_handlers.core.config.Settings`
  dataclass named by ``settings_class``),
- ``load_model()``: load weights once, at start-up,
- ``labels()``: the label spec CVAT shows,
- and, by family, what it answers:

  - :class:`BaseHandler` (a detector, as CVAT calls it): ``predict(images, threshold)`` gives
    one raw prediction per image and ``to_shapes(prediction, image)`` its CVAT shapes;
  - :class:`ImageHandler` (image to image, such as grid removal): ``to_image(request)`` gives
    the new image and ``answer(request, image)`` the payload that carries it.

Like TorchServe's ``handle()`` (preprocess, inference, postprocess), every family runs a
request in two steps the runtime calls: ``parse_request(body)`` (the body's fields checked and
its images decoded) and ``infer(request)`` (the model, then the payload). The Nuclio cycle
around them (events, batches of events, errors and their statuses, out of memory) is
:mod:`quadratseg_handlers.core.runtime`; in a notebook, construct a handler with keyword
settings and call ``annotate``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import Setting, Settings, setting
from quadratseg_handlers.core.memory import is_out_of_memory
from quadratseg_handlers.core.request import (
    Request,
    RequestError,
    decode_images,
    load_image,
    parse_threshold,
)
from quadratseg_handlers.cvat.shapes import Shape
from quadratseg_handlers.cvat.spec import LabelSpec

P = TypeVar("P")

log = logging.getLogger("quadratseg_handlers")


@dataclass(frozen=True)
class DeviceSettings(Settings):
    """Where the model runs: every function reads it."""

    device: str = setting(
        "auto",
        "Torch device: `auto` (cuda:0 when CUDA is available, else cpu), `cpu`, `cuda`, `cuda:N`.",
        parse=cfg.device,
    )


@dataclass(frozen=True)
class ImageSettings(DeviceSettings):
    """The settings of a function that takes one image per request (image to image)."""

    max_image_pixels: int = setting(
        100_000_000,
        "Largest accepted image in pixels (width x height), checked from the file header "
        "before decoding; larger images are answered 413.",
        low=1,
    )
    max_decode_mb: int = setting(
        1024,
        "Most memory in MiB decoding one request's images may take, all together, checked "
        "from the file headers before decoding: width x height x (1 to 4 bytes a pixel by the "
        "file's mode and bit depth, as PIL holds it, twice for 16- and 32-bit grey, + 3 for "
        "the RGB array); more is answered 413. The default passes 100 megapixels of any 8-bit "
        "or 16-bit image.",
        low=1,
    )


@dataclass(frozen=True)
class ThresholdSettings(DeviceSettings):
    """The score threshold of a function whose answers are scored."""

    conf_threshold: float = setting(
        0.25,
        "Default score threshold in [0, 1]; a request's non-zero `threshold` overrides it.",
        low=0.0,
        high=1.0,
    )


@dataclass(frozen=True)
class DetectorSettings(ImageSettings, ThresholdSettings):
    """The settings every detector reads: device, threshold, and the limits of a request
    (fields in the order DEVICE, CONF_THRESHOLD, MAX_IMAGE_PIXELS, MAX_DECODE_MB,
    MAX_BATCH_SIZE, MAX_REQUEST_PIXELS, as the bases' order gives them)."""

    max_batch_size: int = setting(
        16,
        'Most images accepted in one `{"images": [...]}` request; more are answered 413.',
        low=1,
    )
    max_request_pixels: int = setting(
        100_000_000,
        "Most pixels one request may decode, all its images together (checked from the file "
        "headers before any is decoded); more are answered 413. Bounds a worker's memory for "
        'an `{"images": [...]}` batch, and the pixels one predict of a Nuclio batch of events '
        "takes.",
        low=1,
    )


@dataclass(frozen=True)
class RawAnswer:
    """An answer sent as it is (an image file), not as JSON: ``infer`` may return one."""

    body: bytes
    content_type: str


class ModelHandler:
    """What every function shares: typed settings, loading once, its labels, its warnings,
    and the two request steps the runtime calls (``parse_request``, ``infer``)."""

    function_name: ClassVar[str] = "quadratseg-handler"
    """The Nuclio function name this handler serves (used in logs and bundles)."""

    settings_class: ClassVar[type[DeviceSettings]] = DeviceSettings
    """The dataclass of this function's settings; ``settings`` is an instance of it."""
    settings: DeviceSettings

    uses_torch: ClassVar[bool] = True
    """Whether the model may run on torch; :meth:`torch_needed` answers per configured instance."""

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        """Parse and validate every setting (keyword overrides, else the environment).

        Raises ConfigError naming the variable when a value is invalid. Nothing heavy happens
        here: the model is loaded by :meth:`load`.
        """
        self.settings = self.settings_class.load(overrides, environ)
        self.device: str = (
            cfg.resolve_device(self.settings.device) if self.torch_needed() else "cpu"
        )
        self.loaded = False
        self.request_logger: Any = None
        """Nuclio's logger while the runtime serves a request (see :meth:`warn`)."""
        self.request_notes: list[str] = []
        """The warnings of the request being served; the runtime returns them to the client."""

    @classmethod
    def declared_settings(cls) -> list[Setting]:
        """This function's settings as rows (name, parser, default, meaning), in order."""
        return cls.settings_class.declared()

    def torch_needed(self) -> bool:
        """Whether this instance, as configured, runs on torch (default: ``uses_torch``).

        Called once the settings are read, so a handler whose backend is a setting can answer
        per instance; when False, DEVICE is not resolved and torch is not imported.
        """
        return self.uses_torch

    def load_model(self) -> None:
        """Load weights and anything else heavy; called once by :meth:`load`."""

    def load(self) -> None:
        """Load the model once; later calls do nothing."""
        if not self.loaded:
            self.load_model()
            self.loaded = True

    def labels(self) -> list[LabelSpec]:
        """The label spec CVAT shows for this function (``metadata.annotations.spec``)."""
        raise NotImplementedError

    def model_family(self) -> str | None:
        """The loaded model's architecture as its library names it (``YOLO11n-seg``), for the
        name CVAT lists the function under; None when unknown."""
        return None

    def warn(self, message: str, **fields: Any) -> None:
        """Log a warning about the request being served, e.g. why an answer is empty.

        Through Nuclio's logger (as a ``warn_with`` line) when serving, else the
        ``quadratseg_handlers`` Python logger (notebooks). When serving, the message also goes
        back to the client with the answer (the runtime's ``X-Quadratseg-Warning`` header).
        """
        if self.request_logger is not None:
            self.request_notes.append(message)
            self.request_logger.warn_with(message, function=self.function_name, **fields)
        else:
            log.warning("%s: %s %s", self.function_name, message, fields)

    def parse_request(self, body: Mapping[str, Any]) -> Request:
        """Preprocess: a request body's fields checked and its images decoded (RequestError,
        with its 4xx status, for a bad one)."""
        raise NotImplementedError

    def infer(self, request: Request) -> Any:
        """Inference and postprocess: the payload answering one decoded request."""
        raise NotImplementedError

    def batch_limits(self) -> tuple[int, int]:
        """Most images and pixels the requests sharing one :meth:`infer_many` call may hold;
        (1, 1): each request runs alone."""
        return 1, 1

    def infer_many(self, requests: Sequence[Request]) -> list[Any]:
        """Each request's payload, or the exception that is its answer (out of memory is
        raised: the rest would fail alike). Here each request runs alone."""
        return [self.attempt(request) for request in requests]

    def attempt(self, request: Request) -> Any:
        """:meth:`infer` of one request, or the exception it raised (out of memory is raised)."""
        try:
            return self.infer(request)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            return exc


class BaseHandler(ModelHandler, Generic[P]):
    """A detector: images in, one prediction each, CVAT shapes out. Subclasses describe the
    model: ``load_model``, ``predict``, ``to_shapes``, ``labels`` (and ``decode_size``)."""

    settings_class = DetectorSettings
    settings: DetectorSettings

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[P]:
        """One raw prediction per RGB uint8 image, keeping those scoring >= ``threshold``."""
        raise NotImplementedError

    def to_shapes(self, prediction: P, image: np.ndarray) -> list[Shape]:
        """The CVAT shapes of one prediction, in the pixels of ``image``."""
        raise NotImplementedError

    def decode_size(self) -> int | None:
        """The smallest long side, in pixels, this function needs its images decoded at.

        None (the default): full resolution. A model that shrinks every image to a fixed
        input anyway says how large that input is: a JPEG request is then decoded directly at
        a reduced scale whose long side is not below it (a
        :class:`~quadratseg_handlers.core.request.ReducedImage`, several times faster), and
        ``predict``/``to_shapes`` answer in the photo's pixels
        (:func:`~quadratseg_handlers.core.request.photo_size_hw`).
        """
        return None

    def parse_request(self, body: Mapping[str, Any]) -> Request:
        """Take ``image`` (or ``images`` for a batch) and ``threshold`` from a JSON body."""
        settings = self.settings
        threshold = parse_threshold(body.get("threshold"), settings.conf_threshold)
        has_image, has_images = body.get("image") is not None, body.get("images") is not None
        if has_image and has_images:
            raise RequestError("give either 'image' or 'images', not both")
        if has_images:
            batch = body["images"]
            if not isinstance(batch, list) or not batch:
                raise RequestError("'images' must be a non-empty list of base64 strings")
            if len(batch) > settings.max_batch_size:
                raise RequestError(
                    f"'images' holds {len(batch)} images, over "
                    f"MAX_BATCH_SIZE={settings.max_batch_size}",
                    status=413,
                )
            fields = [(item, f"images[{i}]") for i, item in enumerate(batch)]
        elif has_image:
            fields = [(body["image"], "image")]
        else:
            raise RequestError('missing \'image\': expected {"image": "<base64 of the frame>"}')
        images = decode_images(
            fields,
            settings.max_image_pixels,
            settings.max_request_pixels,
            self.decode_size(),
            settings.max_decode_mb,
        )
        return Request(images, threshold, batch=has_images, body=dict(body))

    def infer(self, request: Request) -> Any:
        """One predict over the request's images, then their shapes."""
        return self.payload(request, self.checked_predict(request.images, request.threshold))

    def checked_predict(self, images: Sequence[np.ndarray], threshold: float) -> list[P]:
        """:meth:`predict`, failing when it does not answer one result per image."""
        predictions = self.predict(images, threshold)
        if len(predictions) != len(images):
            raise RuntimeError(
                f"predict returned {len(predictions)} results for {len(images)} images"
            )
        return predictions

    def payload(self, request: Request, predictions: Sequence[P]) -> Any:
        """The JSON payload of a request from its images' predictions (a list per image for an
        ``{"images": [...]}`` request)."""
        pairs = zip(predictions, request.images, strict=True)
        shapes = [self.to_shapes(prediction, image) for prediction, image in pairs]
        return shapes if request.batch else shapes[0]

    def batch_limits(self) -> tuple[int, int]:
        """Requests of one threshold share one predict within MAX_BATCH_SIZE images and
        MAX_REQUEST_PIXELS pixels."""
        return self.settings.max_batch_size, self.settings.max_request_pixels

    def infer_many(self, requests: Sequence[Request]) -> list[Any]:
        """One predict over the images of requests that share a threshold, then each one's
        shapes; when that predict fails, each request runs alone, so that the failure is
        answered only for the request that causes it. Out of memory is raised."""
        if len(requests) == 1 or len({request.threshold for request in requests}) > 1:
            return super().infer_many(requests)
        images = [image for request in requests for image in request.images]
        try:
            predictions = self.checked_predict(images, requests[0].threshold)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            return super().infer_many(requests)
        outcomes: list[Any] = []
        start = 0
        for request in requests:
            end = start + len(request.images)
            try:
                outcomes.append(self.payload(request, predictions[start:end]))
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise
                outcomes.append(exc)
            start = end
        return outcomes

    def annotate(self, image: Any, threshold: float | None = None) -> Any:
        """Notebook entry: CVAT shapes for an image (path, bytes, PIL image or array).

        A list of images gives one list of shapes per image, in one batched predict.
        """
        self.load()
        batch = isinstance(image, list)
        images = [load_image(item) for item in (image if batch else [image])]
        request = Request(images, parse_threshold(threshold, self.settings.conf_threshold), batch)
        return self.infer(request)


class ImageHandler(ModelHandler):
    """Image to image: one image and its request's fields in, one image out (grid removal).

    Subclasses describe the model: ``load_model``, ``to_image`` and ``answer`` (and
    ``parse_request`` when the request's fields must be checked before the image is
    decoded); ``annotate`` is the notebook's way in. Such a function answers images, not
    shapes: its label spec is empty.
    """

    settings_class = ImageSettings
    settings: ImageSettings

    def parse_request(self, body: Mapping[str, Any]) -> Request:
        """The body's one ``image``, decoded at full size (within MAX_IMAGE_PIXELS); its
        other fields stay in ``request.body`` for :meth:`to_image`."""
        if body.get("images") is not None:
            raise RequestError(
                f"{self.function_name} takes one image per request: send 'image', not 'images'"
            )
        if body.get("image") is None:
            raise RequestError('missing \'image\': expected {"image": "<base64>", ...}')
        limit = self.settings.max_image_pixels
        images = decode_images(
            [(body["image"], "image")], limit, limit, None, self.settings.max_decode_mb
        )
        return Request(images, 0.0, batch=False, body=dict(body))

    def to_image(self, request: Request) -> np.ndarray:
        """The new RGB image of one decoded request."""
        raise NotImplementedError

    def answer(self, request: Request, image: np.ndarray) -> Any:
        """The payload carrying the new image (JSON, or a :class:`RawAnswer`)."""
        raise NotImplementedError

    def infer(self, request: Request) -> Any:
        """The new image, then the payload carrying it."""
        return self.answer(request, self.to_image(request))

    def annotate(self, image: Any, *args: Any, **fields: Any) -> np.ndarray:
        """Notebook entry: the new RGB image for an image (path, bytes, PIL image or array)
        and the request's other fields as keywords (a subclass may name them)."""
        if args:
            raise TypeError(f"{type(self).__name__}.annotate takes the fields as keywords")
        self.load()
        return self.to_image(Request([load_image(image)], 0.0, batch=False, body=fields))

    def labels(self) -> list[LabelSpec]:
        """None: an image-to-image function answers with an image, not with CVAT shapes."""
        return []
