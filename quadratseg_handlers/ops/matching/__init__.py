"""Put detected points in template order: robust alignment, Hungarian matching, homography.

A grid or corner detector returns an unordered cloud of points: some template points are
missed, some detections are spurious or duplicated, and the quadrat is rotated, scaled,
shifted and seen in perspective. :func:`match_points` answers, for every template point, which
detection it is, or where it must be when none is. It reads top to bottom
(:mod:`.ordering`):

1. **Validate** (:mod:`.inputs`): the arguments are checked; detections that are not finite,
   beyond the best few per template point, or duplicates of a better one are left out.
2. **Place** (:mod:`.placement`, :mod:`.guesses`): where the template sits on the
   detections, without correspondences. Large templates (the 117-point grid): rotation,
   shear and per-axis scale from the directions and lengths of nearest-neighbour vectors, and
   the translation that the most (detection, template point) pairs vote for (a Hough
   transform). The fit then grows from the template's centre outwards (RANSAC fits with a
   tight threshold, affine first, then a homography), so perspective is followed before the
   outer points are matched; a periodic template fits as well one cell off in the middle, so
   the shift under which the most template points find a detection is chosen last. Small
   templates (the 4 corners): every similarity through two detections and two template
   points is scored. The template's own placement (its normalised coordinates scaled to the
   image) is always a candidate too.
3. **Refit** (:mod:`.refit`, :mod:`.pairing`, :mod:`.fitting`): matching is
   ``scipy.optimize.linear_sum_assignment`` on the distances between the placed template and
   the detections, in normalised image units (dx / width, dy / height); pairs further apart
   than the gate, never more than ``max_cost``, are rejected. A RANSAC homography is fitted
   to the matches and they are matched again, until the pairs are stable; then a final gate
   from the fit's residuals rejects spurious detections that sit near template points with no
   true detection.
4. **Assemble** (:mod:`.ordering`, :mod:`.result`): template points without a detection are
   placed by the homography and reported as filled; detections left over (spurious ones,
   duplicates) are dropped.

Too few matches, or matches on a line, give an empty :class:`Match` whose ``reason`` says
why, never a guessed skeleton. Pure NumPy/SciPy/OpenCV: usable from a notebook on any
detector's output. OpenCV's RANSAC is seeded, so the same input gives the same answer.

Cost: a trained detector answers a few hundred points, so neighbours, duplicates and the
(template point, detection) pairs within a gate come from k-d trees, never from a full
distance matrix, with the distances ``cdist`` would give; what is left is mostly OpenCV's
homography fits.
"""

from quadratseg_handlers.ops.matching.fitting import fill_from_template
from quadratseg_handlers.ops.matching.geometry import project
from quadratseg_handlers.ops.matching.ordering import match_points
from quadratseg_handlers.ops.matching.result import Match, failed_match

__all__ = ["Match", "failed_match", "fill_from_template", "match_points", "project"]
