"""Reading /metrics as Prometheus does: over HTTP from 127.0.0.1, parsed by prometheus-client's own parser."""

from __future__ import annotations

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from storage import metrics

_served: list[int] = []


def in_process_port() -> int:
    """This test process's metrics server (started once, on a port the system picks)."""
    if not _served:
        _served.append(metrics.serve(0))
    return _served[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, *, timeout: float = 5.0) -> dict[tuple[str, frozenset], float]:
    """Every sample at http://127.0.0.1:port/metrics: {(name, frozenset(labels.items())): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is absent (a counter not yet counted)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def wait_for_scrape(port: int, ok, *, timeout: float = 30.0, what: str = "the metrics") -> dict:
    """Scrape until `ok(samples)` holds (a server still starting is retried); the last samples."""
    deadline, last, error = time.monotonic() + timeout, {}, None
    while time.monotonic() < deadline:
        try:
            last = scrape(port, timeout=2.0)
            if ok(last):
                return last
        except OSError as exc:
            error = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} did not show within {timeout} s (last error: {error}); last scrape: "
                         f"{sorted(n for n in names(last) if n.startswith('dreambot'))}")


async def until_scraped(port: int, ok, *, timeout: float = 30.0, what: str = "the metrics") -> dict:
    """`wait_for_scrape` off the event loop, so the process's own tasks (the gauges' watcher) keep running."""
    import asyncio

    return await asyncio.to_thread(wait_for_scrape, port, ok, timeout=timeout, what=what)
