"""RenderService: consumer images of instances (PS3.18 8.3.5 rendered resources, thumbnails).

The pixel data is decoded (pydicom with pylibjpeg), the Modality LUT applied, then the
window (the request's, else the instance's first, else the full range of its values),
and the result scaled into the viewport and encoded as JPEG or PNG (Pillow).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut

from openpacs.domain.errors import NotFound, OpenPacsError
from openpacs.domain.records import StoredInstance
from openpacs.services.outbound import OutboundService


class CannotRender(OpenPacsError):
    """The instance has no image that can be rendered (HTTP 406)."""

    dimse_status = 0xC000
    http_status = 406


@dataclass(frozen=True)
class RenderRequest:
    """What the client asked for."""

    frame: int = 1
    window: tuple[float, float] | None = None  # center, width
    viewport: tuple[int, int] | None = None  # width, height
    quality: int = 90
    media_type: str = "image/jpeg"


MEDIA_TYPES = ("image/jpeg", "image/png")


def _first_number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) or (hasattr(value, "__getitem__") and not isinstance(value, str)):
        try:
            value = value[0]
        except (IndexError, TypeError):
            return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class RenderService:
    """Renders instances; thread-safe."""

    def __init__(self, outbound: OutboundService) -> None:
        self._outbound = outbound

    def render(self, instance: StoredInstance, request: RenderRequest) -> bytes:
        """The encoded image of one frame."""
        if request.media_type not in MEDIA_TYPES:
            raise CannotRender(f"rendered media types are {', '.join(MEDIA_TYPES)}")
        if "7FE00010" not in instance.header:
            raise CannotRender("the instance has no pixel data to render")
        ds = self._outbound.dataset(instance)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if not 1 <= request.frame <= frames:
            raise NotFound(f"frame {request.frame} does not exist (the instance has {frames})")
        try:
            array = ds.pixel_array
        except Exception as exc:
            raise CannotRender(f"the pixel data cannot be decoded: {exc}") from exc
        if frames > 1:
            array = array[request.frame - 1]
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if array.ndim == 3 and array.shape[-1] == 3:
            image = Image.fromarray(self._color(ds, array), "RGB")
        else:
            image = Image.fromarray(self._grey(ds, array, request.window, photometric), "L")
        if request.viewport:
            image.thumbnail(request.viewport, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if request.media_type == "image/png":
            image.save(out, format="PNG")
        else:
            image.save(out, format="JPEG", quality=max(1, min(100, request.quality)))
        return out.getvalue()

    @staticmethod
    def _color(ds: Dataset, array: np.ndarray) -> np.ndarray:
        if array.dtype != np.uint8:
            top = float(array.max()) or 1.0
            array = (array.astype(np.float64) * (255.0 / top)).clip(0, 255)
        return array.astype(np.uint8)

    @staticmethod
    def _grey(ds: Dataset, array: np.ndarray, window: tuple[float, float] | None, photometric: str) -> np.ndarray:
        values = apply_modality_lut(array, ds).astype(np.float64)
        if window is None:
            center = _first_number(getattr(ds, "WindowCenter", None))
            width = _first_number(getattr(ds, "WindowWidth", None))
            if center is not None and width is not None and width > 0:
                window = (center, width)
        if window is None:
            low, high = float(values.min()), float(values.max())
        else:
            center, width = window
            width = max(width, 1.0)
            low, high = center - width / 2, center + width / 2
        scaled = ((values - low) / max(high - low, 1e-6) * 255.0).clip(0, 255)
        if photometric == "MONOCHROME1":
            scaled = 255.0 - scaled
        return scaled.astype(np.uint8)
