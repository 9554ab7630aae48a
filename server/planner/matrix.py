"""Travel between places: straight lines at a speed (the offline default), a CSV matrix, or a road-network
server (OSRM's ``/table`` service by URL).

A provider answers ``minutes(places)`` and ``distances(places)`` — square integer matrices in the order
given. Road answers are cached per pair of places, so a re-plan asks only about places it has not seen. A
provider that is down or answers nonsense raises :class:`MatrixError`; :class:`Fallback` catches it, uses
straight lines instead and says so in ``notes`` (the plan shows the note), so a planner is never left
without a plan because a map server is down.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from linecrew.server.planner.errors import PlannerError

Place = tuple[float, float]


class MatrixError(PlannerError):
    """The travel-time provider could not answer."""


class TravelMatrix(Protocol):
    name: str

    def minutes(self, places: Sequence[Place]) -> list[list[int]]: ...

    def distances(self, places: Sequence[Place]) -> list[list[int]]:
        """Tenths of a distance unit (what the routing cost counts)."""
        ...


class Euclidean:
    """Straight lines at ``speed`` distance units a minute, rounded up to whole minutes."""

    name = "euclidean"

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise MatrixError(f"speed must be positive, not {speed}")
        self.speed = speed

    def minute(self, a: Place, b: Place) -> int:
        return math.ceil(math.hypot(a[0] - b[0], a[1] - b[1]) / self.speed - 1e-9)

    def minutes(self, places: Sequence[Place]) -> list[list[int]]:
        return [[self.minute(a, b) for b in places] for a in places]

    def distances(self, places: Sequence[Place]) -> list[list[int]]:
        return [[math.floor(10 * math.hypot(a[0] - b[0], a[1] - b[1])) for b in places] for a in places]


class _Cached:
    """Per-pair cache over a provider that answers many pairs at once."""

    name = "cached"

    def __init__(self) -> None:
        self._minutes: dict[tuple[Place, Place], int] = {}
        self._tenths: dict[tuple[Place, Place], int] = {}

    def _fetch(self, places: Sequence[Place]) -> tuple[list[list[int]], list[list[int]]]:
        raise NotImplementedError

    def _fill(self, places: Sequence[Place]) -> None:
        unique = list(dict.fromkeys(places))
        if all((a, b) in self._minutes for a in unique for b in unique):
            return
        mins, tenths = self._fetch(unique)
        if len(mins) != len(unique) or any(len(r) != len(unique) for r in mins):
            raise MatrixError(f"{self.name}: answered a {len(mins)}-row matrix for {len(unique)} places")
        for i, a in enumerate(unique):
            for j, b in enumerate(unique):
                self._minutes[(a, b)], self._tenths[(a, b)] = mins[i][j], tenths[i][j]

    def minutes(self, places: Sequence[Place]) -> list[list[int]]:
        self._fill(places)
        return [[self._minutes[(a, b)] for b in places] for a in places]

    def distances(self, places: Sequence[Place]) -> list[list[int]]:
        self._fill(places)
        return [[self._tenths[(a, b)] for b in places] for a in places]


class CsvMatrix(_Cached):
    """A matrix file: rows ``from_x,from_y,to_x,to_y,minutes[,distance]`` (a header row is allowed). A pair the
    file does not list is an error naming it — never a silent guess."""

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = f"csv:{self.path.name}"
        try:
            rows = list(csv.reader(self.path.read_text().splitlines()))
        except OSError as e:
            raise MatrixError(f"{self.path}: cannot read the travel matrix ({e})") from e
        self._table: dict[tuple[Place, Place], tuple[int, int]] = {}
        for n, row in enumerate(rows, 1):
            if not row or (n == 1 and not _numeric(row[0])):
                continue
            try:
                fx, fy, tx, ty, mins = (float(v) for v in row[:5])
                dist = float(row[5]) if len(row) > 5 and row[5] else mins
            except ValueError as e:
                raise MatrixError(f"{self.path}:{n}: expected from_x,from_y,to_x,to_y,minutes[,distance]") from e
            self._table[((fx, fy), (tx, ty))] = (math.ceil(mins), math.floor(10 * dist))

    def _fetch(self, places: Sequence[Place]) -> tuple[list[list[int]], list[list[int]]]:
        mins = [[0] * len(places) for _ in places]
        tenths = [[0] * len(places) for _ in places]
        for i, a in enumerate(places):
            for j, b in enumerate(places):
                if i == j:
                    continue
                if (a, b) not in self._table:
                    raise MatrixError(f"{self.path}: no travel time from {a} to {b}")
                mins[i][j], tenths[i][j] = self._table[(a, b)]
        return mins, tenths


class OsrmMatrix(_Cached):
    """An OSRM server's table service: places are (longitude, latitude); durations in seconds become whole
    minutes (rounded up), distances in metres become tenths of a kilometre."""

    def __init__(self, url: str, *, profile: str = "driving", timeout_s: float = 10.0) -> None:
        super().__init__()
        self.url, self.profile, self.timeout_s = url.rstrip("/"), profile, timeout_s
        self.name = f"osrm:{self.url}"

    def _fetch(self, places: Sequence[Place]) -> tuple[list[list[int]], list[list[int]]]:
        import httpx

        coords = ";".join(f"{x:.6f},{y:.6f}" for x, y in places)
        try:
            r = httpx.get(f"{self.url}/table/v1/{self.profile}/{coords}",
                          params={"annotations": "duration,distance"}, timeout=self.timeout_s)
            r.raise_for_status()
            body = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise MatrixError(f"{self.name}: {type(e).__name__}: {e}") from e
        if body.get("code") != "Ok" or "durations" not in body:
            raise MatrixError(f"{self.name}: answered {body.get('code')!r} {body.get('message', '')}".strip())
        try:
            durations, distances = body["durations"], body.get("distances") or body["durations"]
            mins = [[0 if d is None and i == j else math.ceil(float(d) / 60) for j, d in enumerate(row)]
                    for i, row in enumerate(durations)]
            tenths = [[math.floor(float(d) / 100) for d in row] for row in distances]
        except (TypeError, ValueError) as e:
            raise MatrixError(f"{self.name}: a place it cannot route to ({e})") from e
        return mins, tenths


class Fallback:
    """Ask ``primary``; when it fails, answer with ``fallback`` and record why in ``notes``."""

    def __init__(self, primary: TravelMatrix, fallback: TravelMatrix) -> None:
        self.primary, self.fallback = primary, fallback
        self.name = primary.name
        self.notes: list[str] = []

    def _ask(self, what: str, places: Sequence[Place]) -> list[list[int]]:
        try:
            out: list[list[int]] = getattr(self.primary, what)(places)
            return out
        except MatrixError as e:
            note = f"travel times from {self.primary.name} unavailable ({e}); straight-line estimates used"
            if note not in self.notes:
                self.notes.append(note)
            self.name = f"{self.fallback.name} (fallback)"
            out = getattr(self.fallback, what)(places)
            return out

    def minutes(self, places: Sequence[Place]) -> list[list[int]]:
        return self._ask("minutes", places)

    def distances(self, places: Sequence[Place]) -> list[list[int]]:
        return self._ask("distances", places)


def provider(spec: str | None, *, speed: float = 1.0) -> TravelMatrix:
    """``None``/``euclidean`` → straight lines; ``osrm+http://host:5000`` or ``http(s)://…`` → OSRM; a path to a
    ``.csv`` → that matrix. A road provider always falls back to straight lines when it fails."""
    straight = Euclidean(speed)
    if not spec or spec == "euclidean":
        return straight
    if spec.startswith("osrm+"):
        spec = spec.removeprefix("osrm+")
    if spec.startswith(("http://", "https://")):
        return Fallback(OsrmMatrix(spec), straight)
    if spec.endswith(".csv"):
        return Fallback(CsvMatrix(spec), straight)
    raise MatrixError(f"unknown travel matrix {spec!r}: euclidean, an OSRM URL, or a .csv file")


def _numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False
