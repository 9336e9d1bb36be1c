"""Put detected points in template order (see :mod:`.ordering`)."""

from quadratseg_handlers.ops.matching.ordering import (
    Match,
    failed_match,
    fill_from_template,
    match_points,
    project,
)

__all__ = ["Match", "failed_match", "fill_from_template", "match_points", "project"]
