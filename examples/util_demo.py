"""papyflow.util: ready worker functions, items handed between processes, scripts.

Run from the repository root: ``python examples/util_demo.py``.
"""

import io
import logging
import sys

from numap import NuMap
from papyflow.util.config import start_logger
from papyflow.util.func import (
    dump_item,
    dump_stream,
    ipasser,
    json_dumps,
    load_item,
    load_stream,
    make_lines,
    sjoiner,
    szipper,
)
from papyflow.util.runtime import get_runtime
from papyflow.util.script import ScriptError, get_config, script


def shout(inbox):
    """A worker function of our own: the inbox holds one upstream result."""
    return inbox[0].upper()


if __name__ == "__main__":
    # Messages of every papyflow module go to standard error from here on.
    start_logger(log_to_stream=True, log_to_stream_level=logging.WARNING)

    # An inbox holds one result per upstream Piper.
    inbox = ("alpha", "beta", "gamma")
    print("ipasser:", ipasser(inbox, i=1))
    print("sjoiner:", sjoiner(inbox, s=(0, 2), join="+"))
    print("szipper:", szipper(([1, 2], "ab")))
    print("json_dumps:", json_dumps(({"n": 1},)))

    # Worker processes dump their results; this process loads them by locator.
    with NuMap(dump_item, [(b"via a socket",)], kwargs={"type": "socket"},
               worker_num=1) as locators:
        for locator in locators:
            print("socket item:", load_item((locator,)))
    print("fifo item:", load_item((dump_item(("via a fifo",), type="fifo"),)))

    # Streams: one item per delimited block, and lines as a file grows.
    stream = io.StringIO()
    for word in ("one", "two"):
        dump_stream((word,), stream, delimiter="--")
    stream.seek(0)
    print("load_stream:", list(load_stream(stream, delimiter="--")))
    print("make_lines:", list(make_lines(io.StringIO("a\nb\n"))))

    # A script as a worker function, and the error a failing one raises.
    cfg = get_config("bash")
    cfg["code"] = "tr a-z A-Z"
    print("script:", script(("piped through bash",), cfg))
    cfg["code"] = "echo 'no such column' >&2; exit 2"
    try:
        script(("x",), cfg)
    except ScriptError as error:
        print("ScriptError:", error)

    runtime = get_runtime()
    print(f"runtime: Python {runtime['python']} on {runtime['system']}, "
          f"{runtime['usable_cpus']} usable CPUs, numpy {runtime['versions']['numpy']}")
    sys.exit(0)
