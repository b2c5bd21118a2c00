"""Start the real strom binary for Python client tests."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def strom_bin() -> str:
    path = os.environ.get("STROM_BIN") or str(ROOT / "target" / "debug" / "strom")
    if not Path(path).exists():
        pytest.fail(f"{path} not found: build it with `cargo build -p strom` (scripts/test does)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Strom:
    def __init__(self, *props: str):
        self.port = free_port()
        self.admin_port = free_port()
        self.data = tempfile.mkdtemp(prefix="strom-py-")
        args = [strom_bin(), "server", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}",
                "--set", f"admin.listener=127.0.0.1:{self.admin_port}"]
        for p in props:
            args += ["--set", p]
        env = dict(os.environ, STROM_LOG=os.environ.get("STROM_TEST_LOG", "warn"))
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"strom exited during start-up: {self.proc.returncode}")
                if time.time() > deadline:
                    raise RuntimeError("strom did not start listening within 30 s")
                time.sleep(0.02)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def strom():
    s = Strom()
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0, "strom must exit cleanly on SIGTERM"
