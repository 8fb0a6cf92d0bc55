"""Boxes carried between the pictures that were searched: the searches are costly, so only one picture in a few is
searched, and the others get boxes from the searches before and after them.

Each kind (faces, plates) is searched on its own schedule. A box found in one search is linked to the box of the
same kind nearest to it in the next search of that kind (centres closer than LINK_DISTANCE sides, sizes within
LINK_SCALE); in the pictures between two linked boxes the box moves and grows linearly from one to the other
(grown by MOTION_MARGIN of the distance it travels, for motion that is not straight). A box with no link onwards
(the face left, turned away or was missed) is kept for `carry` pictures after its search, moved on at the speed
its link before it had; one with no link backwards (a face that came in, or was missed before) for `carry` pictures
before it, moved back the same way. Those kept boxes grow by HOLD_GROWTH of their side per picture, since where
the face went is a guess.

The window holds the last `carry` decoded pictures until the searches after them are known, so memory stays
bounded; `every` (the longest gap between two searches of a kind) must be at most carry + 1, so the search after
a picture is always known when it leaves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from node.sharing.boxes import Box

LINK_DISTANCE = 2.0
"""Largest distance between the centres of two boxes linked across searches, in the larger box's longer side."""
LINK_SCALE = 2.0
"""Largest ratio between the sides of two linked boxes."""
MOTION_MARGIN = 0.25
"""A box moving between two linked searches is grown on each side by this share of the distance it moves."""
HOLD_GROWTH = 0.08
"""A box kept past its last search (or before its first) grows on each side by this share of its side per
picture."""


@dataclass
class _Search:
    """The boxes one search of one kind found, and their links to the search before and after."""

    index: int
    boxes: list[Box]
    back: list[int | None] = field(default_factory=list)
    """For each box, the index of the box it is linked to in the search before (None: no link)."""
    on: list[int | None] = field(default_factory=list)
    """The same towards the search after (filled in when that search comes)."""


def _centre(b: Box) -> tuple[float, float]:
    return b.x + b.w / 2, b.y + b.h / 2


def _link(before: list[Box], after: list[Box]) -> list[int | None]:
    """For each box of `after`, the box of `before` it continues (greedy, nearest first), or None."""
    pairs = []
    for j, b in enumerate(after):
        for i, a in enumerate(before):
            side = max(a.w, a.h, b.w, b.h)
            if max(a.w, b.w) > LINK_SCALE * min(a.w, b.w) or max(a.h, b.h) > LINK_SCALE * min(a.h, b.h):
                continue
            (ax, ay), (bx, by) = _centre(a), _centre(b)
            distance = float(np.hypot(ax - bx, ay - by)) / side
            if distance <= LINK_DISTANCE:
                pairs.append((distance, i, j))
    back: list[int | None] = [None] * len(after)
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if back[j] is None and i not in used:
            back[j] = i
            used.add(i)
    return back


def _shifted(box: Box, dx: float, dy: float, grow: float, size: tuple[int, int]) -> Box | None:
    """`box` moved by (dx, dy) and grown by `grow` pixels on each side, clipped to the picture (width, height)."""
    x0, y0 = max(0, int(box.x + dx - grow)), max(0, int(box.y + dy - grow))
    x1 = min(size[0], int(np.ceil(box.x + box.w + dx + grow)))
    y1 = min(size[1], int(np.ceil(box.y + box.h + dy + grow)))
    return Box(x0, y0, x1 - x0, y1 - y0, box.kind) if x1 > x0 and y1 > y0 else None


def _between(a: Box, b: Box, t: float, size: tuple[int, int]) -> Box | None:
    """The box a share `t` of the way from `a` to `b`, grown by MOTION_MARGIN of the way from a to b."""
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    grow = MOTION_MARGIN * float(np.hypot(bx - ax, by - ay))
    w, h = a.w + t * (b.w - a.w), a.h + t * (b.h - a.h)
    cx, cy = ax + t * (bx - ax), ay + t * (by - ay)
    mid = Box(round(cx - w / 2), round(cy - h / 2), round(w), round(h), a.kind)
    return _shifted(mid, 0, 0, grow, size)


_Ready = tuple[np.ndarray, list[Box], "int | None"]
"""A picture let out of the window, the boxes to blur in it, and its pts."""


class Tracker:
    """Holds the last `carry` pictures until the searches after them are known; gives each the boxes of its kinds
    carried as the module docstring says."""

    def __init__(self, carry: int, every: int) -> None:
        if not 1 <= every <= carry + 1:
            raise ValueError(f"searches at most carry + 1 = {carry + 1} pictures apart, not {every}")
        self.carry = carry
        self.pending: deque[tuple[int, np.ndarray, int | None]] = deque()
        self.searches: dict[str, deque[_Search]] = {}
        self.index = 0

    def push(self, image: np.ndarray, found: dict[str, list[Box]], pts: int | None) -> Iterator[_Ready]:
        """Add a picture and what the searches run on it found, by kind (a kind absent: not searched in this
        picture); yields (picture, boxes to blur, pts) for the pictures now complete."""
        for kind, boxes in found.items():
            history = self.searches.setdefault(kind, deque())
            search = _Search(self.index, list(boxes))
            if history:
                last = history[-1]
                search.back = _link(last.boxes, search.boxes)
                last.on = [None] * len(last.boxes)
                for j, i in enumerate(search.back):
                    if i is not None:
                        last.on[i] = j
            else:
                search.back = [None] * len(search.boxes)
            search.on = [None] * len(search.boxes)
            history.append(search)
        self.pending.append((self.index, image, pts))
        self.index += 1
        while self.pending and self.pending[0][0] + self.carry < self.index:
            yield self._pop()

    def drain(self) -> Iterator[_Ready]:
        """Yield the pictures still held, at the end of the clip."""
        while self.pending:
            yield self._pop()

    def _pop(self) -> _Ready:
        index, image, pts = self.pending.popleft()
        size = (image.shape[1], image.shape[0])
        boxes: list[Box] = []
        for history in self.searches.values():
            # Searches more than carry + 1 behind this picture (and so behind every picture still held) are done.
            while len(history) > 1 and history[1].index < index - self.carry:
                history.popleft()
            boxes += self._boxes(list(history), index, size)
        return image, boxes, pts

    def _boxes(self, history: list[_Search], index: int, size: tuple[int, int]) -> list[Box]:
        """The boxes of one kind for picture `index`, from its searches."""
        out: list[Box | None] = []
        for n, search in enumerate(history):
            gap = index - search.index
            if abs(gap) > self.carry:
                continue
            following = history[n + 1] if n + 1 < len(history) else None
            previous = history[n - 1] if n > 0 else None
            for k, box in enumerate(search.boxes):
                if gap == 0:
                    out.append(box)
                elif gap > 0 and following is not None and search.on[k] is not None and following.index > index:
                    nxt = following.boxes[search.on[k] or 0]
                    out.append(_between(box, nxt, gap / (following.index - search.index), size))
                elif gap > 0 and (following is None or search.on[k] is None):
                    out.append(self._held(box, gap, previous, search.back[k], search.index, size))
                elif gap < 0 and search.back[k] is None:
                    back = following.boxes[search.on[k] or 0] if following and search.on[k] is not None else None
                    out.append(self._held(box, gap, None if back is None else following, search.on[k],
                                          search.index, size))
        return [b for b in out if b is not None]

    @staticmethod
    def _held(box: Box, gap: int, other: _Search | None, link: int | None, at: int,
              size: tuple[int, int]) -> Box | None:
        """`box` kept `gap` pictures after (or, negative, before) its search at `at`, moved at the speed its link
        to `other`'s search gives (if any)."""
        dx = dy = 0.0
        if other is not None and link is not None:
            (ox, oy), (bx, by) = _centre(other.boxes[link]), _centre(box)
            steps = at - other.index
            dx, dy = (bx - ox) / steps * gap, (by - oy) / steps * gap
        return _shifted(box, dx, dy, HOLD_GROWTH * max(box.w, box.h) * abs(gap), size)
