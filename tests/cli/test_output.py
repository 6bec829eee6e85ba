"""``emit_json`` writes the whole document even when stdout is a full, non-blocking pipe.

A command that ran an event loop on libuv may leave its standard output
non-blocking; a large ``--json`` document to a slow reader must still arrive
whole (a short write once cut ``chat history --json`` at 64 KiB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from hopline.cli.output import write_all

SCRIPT = """
import json, os, sys
from hopline.cli.output import emit_json
os.set_blocking(sys.stdout.fileno(), False)
emit_json({"messages": ["x" * 100] * 5000})
"""


def test_write_all_fills_a_non_blocking_pipe_for_a_slow_reader() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    data = os.urandom(1 << 20)  # 16 pipe buffers' worth
    got = bytearray()

    def reader() -> None:
        while chunk := os.read(read_end, 8192):
            got.extend(chunk)
            time.sleep(0.0005)

    thread = threading.Thread(target=reader)
    thread.start()
    write_all(write_end, data)
    os.close(write_end)
    thread.join(10)
    os.close(read_end)
    assert bytes(got) == data


def test_a_big_json_document_arrives_whole_through_a_non_blocking_stdout() -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE)
    assert process.stdout is not None
    time.sleep(0.5)  # let the writer fill the pipe and find it full
    out = process.stdout.read()
    assert process.wait(10) == 0
    assert len(out) > 500_000
    assert json.loads(out) == {"messages": ["x" * 100] * 5000}
