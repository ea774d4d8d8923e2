"""Peak resident memory of the current process, for stage metadata and benchmarks."""
from __future__ import annotations

import resource
import sys


def peak_rss_bytes() -> int:
    """The high-water mark of this process's resident set since it started (exec).

    Linux (and Glue): VmHWM from /proc/self/status. Not ru_maxrss: Linux carries the
    parent's high-water mark into it at exec, so a stage started by a 500 MiB Dagster
    process would report 500 MiB whatever it used itself. Elsewhere ru_maxrss
    (bytes on macOS, KiB on other systems).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
