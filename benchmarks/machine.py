"""Describe the machine and software a benchmark ran on."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (falls back to ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version_of(distribution: str) -> str | None:
    """Installed version of ``distribution``, ``None`` when not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def busy_percent(window_s: float = 1.0) -> float:
    """System-wide CPU use (0-100 %) over the next ``window_s`` seconds."""
    return float(psutil.cpu_percent(interval=window_s))


def machine_info(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Facts about this machine and the versions of ``packages``."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "numpy": version_of("numpy"),
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "packages": {name: version_of(name) for name in packages},
        "loadavg": list(os.getloadavg()),
        "busy_percent": busy_percent(),
    }


def machine_line(info: dict[str, Any]) -> str:
    """One-line human summary of :func:`machine_info`."""
    cores = f"{info['cores']} cores"
    if info.get("usable_cores") and info["usable_cores"] != info["cores"]:
        cores += f" ({info['usable_cores']} usable)"
    ram = info["ram_bytes"] / 2**30
    return (
        f"Machine: {info['cpu']}, {cores}, {ram:.1f} GiB RAM, {info['os']}; "
        f"Python {info['python']}, numpy {info['numpy'] or 'not installed'}; {info['date']}"
    )


def packages_line(info: dict[str, Any]) -> str:
    """One-line summary of the measured libraries' versions."""
    parts = [
        f"{name} {version or 'not installed'}"
        for name, version in sorted(info.get("packages", {}).items())
    ]
    return "Libraries: " + ", ".join(parts) if parts else ""
