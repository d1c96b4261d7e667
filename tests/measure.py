"""Run the CLI as a user does, with its peak resident memory measured and a time limit.

The measuring is done by a small launcher process of its own: Linux carries
a process's peak RSS across fork and exec, so a child forked straight from
the test process (which may have grown to hundreds of MiB over a suite)
would report the test process's size, not its own.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import NEUTRAL_DIR, desync_env

MIB = 1 << 20
RSS_LIMIT = 256 * MIB
TIMED_OUT = 124

# Runs the command (standard input passed through), kills it past the timeout (exit 124), and prints the
# child's peak RSS in KiB on the last line of stderr.
_MEASURE = r"""
import resource, subprocess, sys
timeout, cmd = float(sys.argv[1]), sys.argv[2:]
proc = subprocess.Popen(cmd)
try:
    rc = proc.wait(timeout)
except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    rc = 124
sys.stderr.flush()
sys.stderr.write("\npeak-rss-kib %d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
"""


@dataclass
class Measured:
    returncode: int
    stdout: bytes
    stderr: bytes
    peak_rss: int  # bytes

    @property
    def error(self) -> str:
        return self.stderr.decode(errors="replace")


def run_measured(*args: object, env: dict[str, str] | None = None, timeout: float = 60,
                 input: bytes | None = None, tmp_path: Path | None = None) -> Measured:
    """``desync ARGS``, stopped after ``timeout`` s (returncode 124), with its peak RSS.

    ``tmp_path`` is accepted for callers that pass it; nothing is written there.
    """
    cmd = [sys.executable, "-c", _MEASURE, str(timeout), sys.executable, "-m", "desync", *map(str, args)]
    proc = subprocess.run(cmd, input=input, capture_output=True, cwd=NEUTRAL_DIR, env=env or desync_env(),
                          timeout=timeout + 30)
    head, _, tail = proc.stderr.rpartition(b"\npeak-rss-kib ")
    return Measured(proc.returncode, proc.stdout, head, int(tail.split()[0]) * 1024)
