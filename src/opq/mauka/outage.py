"""Outages: which boxes fell silent, and when their data came back; pure, fed times and flags."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

EndReason = Literal["data", "unplugged", "removed"]


@dataclass(frozen=True)
class OutageStart:
    """A box fell silent: the outage starts at its last measurement [ms since epoch]."""

    box_id: str
    start_ms: int


@dataclass(frozen=True)
class OutageEnd:
    """A box's outage is over at end_ms [ms since epoch]: its data came back, or it no longer counts."""

    box_id: str
    end_ms: int
    reason: EndReason


class OutageTracker:
    """Per box, the newest measurement time and whether an outage is open.

    A box is in outage when it has sent nothing for `outage_after_ms` and is not marked unplugged (or
    in maintenance). The outage starts at its last measurement and ends at its first new one. Only a
    box the tracker has seen can go silent: the service seeds each registered box with its newest
    stored measurement at start (`seen`), so a box that went quiet while Mauka was down is caught, and
    a box with no stored measurement at all (never reported, or silent for longer than measurements
    are kept) raises no outage until it first reports. An outage still open from before a restart is
    picked up with `restore`. Marking a box unplugged during its outage ends the outage then; so does
    removing the box from the registry.
    """

    def __init__(self, outage_after_ms: int) -> None:
        if outage_after_ms <= 0:
            raise ValueError(f"outage_after_ms must be positive, not {outage_after_ms}")
        self.outage_after_ms = outage_after_ms
        self.last_seen: dict[str, int] = {}
        self.open: dict[str, int] = {}
        """Start [ms] of each open outage, by box."""

    def seen(self, box_id: str, timestamp_ms: int) -> OutageEnd | None:
        """A measurement of the box at timestamp_ms; the end of its outage if this is the return."""
        if timestamp_ms > self.last_seen.get(box_id, timestamp_ms - 1):
            self.last_seen[box_id] = timestamp_ms
        start = self.open.get(box_id)
        if start is None or timestamp_ms <= start:
            return None
        del self.open[box_id]
        logger.info("box %s reports again at %d after an outage from %d", box_id, timestamp_ms, start)
        return OutageEnd(box_id, timestamp_ms, "data")

    def restore(self, box_id: str, start_ms: int) -> None:
        """An outage of the box, open since start_ms, that an earlier run recorded."""
        self.open[box_id] = start_ms
        self.last_seen[box_id] = max(self.last_seen.get(box_id, start_ms), start_ms)

    def silent(self, now_ms: int, unplugged: Mapping[str, bool]) -> list[str]:
        """Registered boxes, plugged in and not yet in outage, that have been silent long enough.

        `unplugged` maps every registered box to its unplugged flag. These are the boxes `check`
        would start an outage for: worth confirming against the store first.
        """
        return sorted(
            box
            for box, is_unplugged in unplugged.items()
            if not is_unplugged
            and box not in self.open
            and box in self.last_seen
            and now_ms - self.last_seen[box] >= self.outage_after_ms
        )

    def check(self, now_ms: int, unplugged: Mapping[str, bool]) -> tuple[list[OutageStart], list[OutageEnd]]:
        """Outages that start now, and open ones that end because the box is unplugged or gone."""
        ends = []
        for box in sorted(self.open):
            reason: EndReason | None = (
                "removed" if box not in unplugged else "unplugged" if unplugged[box] else None
            )
            if reason is not None:
                del self.open[box]
                ends.append(OutageEnd(box, now_ms, reason))
        starts = []
        for box in self.silent(now_ms, unplugged):
            self.open[box] = self.last_seen[box]
            starts.append(OutageStart(box, self.last_seen[box]))
            logger.warning("box %s silent since %d: outage", box, self.last_seen[box])
        return starts, ends
