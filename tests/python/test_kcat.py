"""kcat (librdkafka 2.0 from Debian: an old client) against strom: -L, -P and -C."""

import os
import shutil
import subprocess

import pytest

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat(*args, input=None):
    return subprocess.run([KCAT, *args], input=input, capture_output=True, timeout=60, check=True, text=True)


def test_kcat_list_produce_consume(strom):
    if KCAT is None:
        if os.environ.get("STROM_REQUIRE_KCAT") == "1":
            pytest.fail("kcat is required (scripts/test installs it with apt-get)")
        pytest.skip("kcat is not installed")
    lines = [f"key{i}:line {i}" for i in range(200)]
    kcat("-b", strom.bootstrap, "-P", "-t", "kc", "-K", ":", input="\n".join(lines) + "\n")
    listing = kcat("-b", strom.bootstrap, "-L").stdout
    assert 'topic "kc" with 1 partitions' in listing
    assert "1 brokers" in listing
    out = kcat("-b", strom.bootstrap, "-C", "-t", "kc", "-o", "beginning", "-e", "-f", "%k:%s:%o\n").stdout
    got = out.strip().split("\n")
    assert got == [f"{line}:{i}" for i, line in enumerate(lines)]
