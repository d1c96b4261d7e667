"""A real sshd on 127.0.0.1 for the SSH tests: random port, fresh host and client keys.

The client side goes through generated wrapper scripts (``CASYNC_SSH_PATH``)
that add the key, port and no-known-hosts options, and the remote command
is a wrapper that runs this interpreter with ``-m desync`` and the same
import settings, so the code under test is what answers on the far end.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/sbin/sshd") if os.access(p, os.X_OK)), None)
requires_sshd = pytest.mark.skipif(SSHD is None, reason="sshd not found (apt-get install openssh-server)")

# Settings that decide which desync the remote wrapper imports (sources or the compiled install).
_PASSED_ENV = ("PYTHONPATH", "DESYNC_NO_ACCEL", "DESYNC_TEST_MODE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _script(path: Path, text: str) -> str:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return str(path)


class LoopbackSSHD:
    def __init__(self, root: Path) -> None:
        assert SSHD is not None
        self.root = root
        self.port = _free_port()
        root.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        (root / "authorized_keys").chmod(0o600)
        os.makedirs("/run/sshd", exist_ok=True)
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile none\n"
            f"UsePAM no\nStrictModes no\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin yes\nLogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n"
            "Subsystem sftp internal-sftp\n")
        self.log = open(root / "sshd.log", "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self._wait_ready()
        common = (f"-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "
                  f"-o IdentitiesOnly=yes -o LogLevel=ERROR -i {root / 'client_key'}")
        self.ssh = _script(root / "ssh", f'exec ssh {common} -p {self.port} "$@"\n')
        self.ssh_without_port = _script(root / "ssh-noport", f'exec ssh {common} "$@"\n')
        exports = "".join(f"export {k}='{os.environ[k]}'\n" for k in _PASSED_ENV if k in os.environ)
        self.remote = _script(root / "remote-desync", f'{exports}exec {sys.executable} -m desync "$@"\n')

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def env(self, remote: str | None = None, ssh: str | None = None) -> dict[str, str]:
        """Environment for a client: our ssh wrapper and, unless None, the remote command."""
        env = {k: v for k, v in os.environ.items() if k not in ("DESYNC_PROGRESSBAR_ENABLED",
                                                                "DESYNC_ENABLE_PARSABLE_PROGRESS")}
        env["CASYNC_SSH_PATH"] = ssh or self.ssh
        env.pop("CASYNC_REMOTE_PATH", None)
        if remote is not None:
            env["CASYNC_REMOTE_PATH"] = remote
        return env

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    if SSHD is None:
        pytest.skip("sshd not found (apt-get install openssh-server)")
    server = LoopbackSSHD(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
