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


def _non_ephemeral_ports():
    """A port range outside the kernel's ephemeral one, where no outgoing connection takes a
    port between the check and the broker's bind (see free_ports in tests/support/mod.rs)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low >= 12000:
        return 10000, low
    if high <= 63000:
        return high + 1, 65536
    return None


_PORTS = _non_ephemeral_ports()
_next_port = 0


def free_port() -> int:
    """A loopback port that was free a moment ago, outside the ephemeral range when there is one."""
    global _next_port
    if _PORTS is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    lo, hi = _PORTS
    start = (os.getpid() * 2654435761) % (hi - lo)
    for _ in range(2000):
        port = lo + (start + _next_port) % (hi - lo)
        _next_port += 1
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}..{hi}")


class Strom:
    def __init__(self, *props: str):
        self.port = free_port()
        self.admin_port = free_port()
        self.registry_port = free_port()
        self.data = tempfile.mkdtemp(prefix="strom-py-")
        args = [strom_bin(), "server", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}",
                "--set", f"admin.listener=127.0.0.1:{self.admin_port}",
                "--set", f"schema.registry.listener=127.0.0.1:{self.registry_port}"]
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
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

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
