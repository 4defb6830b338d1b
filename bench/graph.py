"""The social graphs: socfb-Reed98 (real) and the sub-graphs the quick run uses."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REED98", "Graph", "load_edges"]

_RELATIVE = Path("shared/datasets/social-graph/socfb-Reed98/socfb-Reed98.edges")


def _find_reed98() -> Path:
    """``shared/`` beside the checkout: /work/main and the worktrees under /work/wt alike."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / _RELATIVE
        if candidate.exists():
            return candidate
    return here.parents[2] / _RELATIVE


REED98 = _find_reed98()


@dataclass(frozen=True)
class Graph:
    """Users 0..n-1; ``follows`` holds directed (follower, followee) pairs."""

    name: str
    n: int
    follows: list[tuple[int, int]]

    def followers(self) -> list[list[int]]:
        result: list[list[int]] = [[] for _ in range(self.n)]
        for follower, followee in self.follows:
            result[followee].append(follower)
        return result

    def followees(self) -> list[list[int]]:
        result: list[list[int]] = [[] for _ in range(self.n)]
        for follower, followee in self.follows:
            result[follower].append(followee)
        return result

    def describe(self) -> dict[str, object]:
        counts = [len(f) for f in self.followers()]
        return {
            "name": self.name,
            "users": self.n,
            "follows": len(self.follows),
            "followers_median": statistics.median(counts) if counts else 0,
            "followers_mean": round(statistics.fmean(counts), 1) if counts else 0,
            "followers_max": max(counts, default=0),
        }


def load_edges(path: Path = REED98, *, limit_nodes: int | None = None) -> Graph:
    """An undirected edge list as a follow graph: each edge is followed in both directions,
    as DeathStarBench's socialNetwork loader does. ``limit_nodes`` keeps the sub-graph of the
    first nodes (for quick runs)."""
    edges: set[tuple[int, int]] = set()
    n = 0
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        u, v = int(parts[0]), int(parts[1])
        if u == v or (limit_nodes is not None and (u >= limit_nodes or v >= limit_nodes)):
            continue
        edges.add((u, v))
        edges.add((v, u))
        n = max(n, u + 1, v + 1)
    nodes_file = path.with_suffix(".nodes")
    if limit_nodes is None and nodes_file.exists():
        n = max(n, int(nodes_file.read_text().split()[0]))
    elif limit_nodes is not None:
        n = limit_nodes
    name = path.stem if limit_nodes is None else f"{path.stem}[:{limit_nodes}]"
    return Graph(name=name, n=n, follows=sorted(edges))
