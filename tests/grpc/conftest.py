"""Fixtures for the gRPC client tests: one real hoist-server with --grpc-port 0.

The server prints `listening on http://HOST:PORT` and then `grpc listening on
HOST:PORT` on stdout; the fixture reads both, waits for /v2/health/ready and
stops the server with SIGTERM at the end of the session. Reference data and the
ONNX Runtime library are found as tests/clients finds them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("clients_conftest", REPO / "tests" / "clients" / "conftest.py")
clients = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(clients)

LR = clients.LR
START_TIMEOUT_S = 120.0


class GrpcServer:
    def __init__(self, runtime: str):
        binary = clients.server_bin()
        self.logdir = Path(tempfile.mkdtemp(prefix=f"hoist-grpc-{runtime}-"))
        self.out = self.logdir / "stdout"
        self.err = self.logdir / "stderr"
        env = dict(os.environ)
        if runtime == "onnxruntime":
            env["ORT_DYLIB_PATH"] = clients.ort_dylib() or ""
        cmd = [str(binary), "--model", str(clients.MODELS / LR), "--host", "127.0.0.1",
               "--port", "0", "--grpc-port", "0", "--runtime", runtime]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        deadline = time.monotonic() + START_TIMEOUT_S
        self.http = self.grpc = None
        while time.monotonic() < deadline and not (self.http and self.grpc):
            for line in self.out.read_text(errors="replace").splitlines():
                if line.startswith("listening on "):
                    self.http = line[len("listening on "):].strip()
                elif line.startswith("grpc listening on "):
                    self.grpc = line[len("grpc listening on "):].strip()
            if self.proc.poll() is not None:
                pytest.fail(f"hoist-server exited: {self.err.read_text(errors='replace')[-4000:]}")
            time.sleep(0.05)
        if not (self.http and self.grpc):
            self.stop()
            pytest.fail("hoist-server printed no listening lines")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.http + "/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail("hoist-server never became ready")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session", params=clients.runtimes())
def server(request):
    s = GrpcServer(request.param)
    yield s
    s.stop()
