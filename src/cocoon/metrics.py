"""Counters, gauges and histograms with Prometheus text exposition.

Small on purpose: each node owns one `Registry` (no global state), the hot
path only adds to floats in a dict, and rendering happens on scrape.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

Labels = tuple[tuple[str, str], ...]

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _format_labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{key}="{_escape(value)}"' for key, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counter:
    """A monotonically increasing value per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        # Integers stay integers (nanotons must not round through floats).
        self.values: dict[Labels, int | float] = {}

    def inc(self, amount: int | float = 1, **labels: str) -> None:
        key = _labels(labels)
        self.values[key] = self.values.get(key, 0) + amount

    def total(self) -> int | float:
        return sum(self.values.values())

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_format_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())
        ]


class Gauge:
    """A value read at scrape time from a callback."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name = name
        self.help = help_text
        self.read = read

    def samples(self) -> list[str]:
        return [f"{self.name} {self.read():g}"]


class Histogram:
    """Observations counted into fixed buckets (seconds by default)."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        self.name = name
        self.help = help_text
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (for /jsonstats)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            seen += count
            if seen >= rank:
                return bound
        return float("inf")

    def samples(self) -> list[str]:
        lines = []
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.sum:g}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


Metric = Counter | Gauge | Histogram


class Registry:
    """The metrics of one node."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.metrics: list[Metric] = []

    def counter(self, name: str, help_text: str) -> Counter:
        metric = Counter(f"{self.prefix}_{name}", help_text)
        self.metrics.append(metric)
        return metric

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> Gauge:
        metric = Gauge(f"{self.prefix}_{name}", help_text, read)
        self.metrics.append(metric)
        return metric

    def histogram(self, name: str, help_text: str) -> Histogram:
        metric = Histogram(f"{self.prefix}_{name}", help_text)
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        """The Prometheus text exposition format, version 0.0.4."""
        lines: list[str] = []
        for metric in self.metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
