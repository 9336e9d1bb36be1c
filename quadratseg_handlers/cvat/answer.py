"""A function's answer as the JSON text CVAT receives.

:func:`answer_json` writes exactly what ``json.dumps`` writes for the answer with every
:class:`~quadratseg_handlers.cvat.masks.MaskValues` as its list, but builds each mask's text
from its array: ``json.dumps`` of 300 colony masks (millions of 0/1 values) takes seconds, one
numpy pass a few tens of milliseconds.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from quadratseg_handlers.cvat.masks import MaskValues


def answer_json(payload: Any, *, indent: int | None = None) -> str:
    """``json.dumps(payload, indent=indent)`` where mask values count as their lists.

    Each mask is written as a marker string, then the markers are replaced by the masks' own
    JSON text; the marker holds a random token, so no string of the answer can be one.
    With ``indent`` (one value per line) the masks go through ``json.dumps`` as lists.
    """
    if indent is not None:
        return json.dumps(payload, indent=indent, default=_as_list)
    masks: list[str] = []
    marker = f"\0mask {secrets.token_hex(16)}\0"

    def encode(value: Any) -> str:
        if isinstance(value, MaskValues):
            masks.append(value.json())
            return marker
        return _as_list(value)

    text = json.dumps(payload, default=encode)
    if not masks:
        return text
    pieces = text.split(json.dumps(marker))
    if len(pieces) != len(masks) + 1:  # unreachable: the token is random
        raise RuntimeError("a mask marker appeared in the answer's text")
    texts = [pieces[0]]
    for mask, piece in zip(masks, pieces[1:], strict=True):
        texts += (mask, piece)
    return "".join(texts)


def _as_list(value: Any) -> Any:
    if isinstance(value, MaskValues):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
