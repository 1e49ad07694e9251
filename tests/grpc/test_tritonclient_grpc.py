"""hoist-server's gRPC port against Triton's gRPC client (tritonclient.grpc 2.73).

Raw mode is what `tritonclient.grpc` always sends: `InferInput.set_data_from_numpy`
fills `raw_input_contents`, and `InferResult.as_numpy` reads `raw_output_contents`
(it cannot read typed numeric contents). Plain mode sends typed
`InferTensorContents` through the client's own generated stub
(`tritonclient.grpc.service_pb2_grpc`); hoist answers it with typed contents.
Both must equal the REST answer of the same server, and the reference outputs.
"""

from __future__ import annotations

import json
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import LR, clients


def rest_infer(server, x: np.ndarray) -> dict[str, np.ndarray]:
    body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.flatten().tolist()}]}).encode()
    req = urllib.request.Request(f"{server.http}/v2/models/{LR}/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.load(r)
    return {o["name"]: np.asarray(o["data"], dtype=np.int64 if o["datatype"] == "INT64" else np.float32)
            .reshape(o["shape"]) for o in out["outputs"]}


def reference_x() -> np.ndarray:
    return clients.ref_array(clients.load_reference(LR)["inputs"]["input"])


def test_health_and_metadata(server):
    c = grpcclient.InferenceServerClient(url=server.grpc)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready(LR)
    assert c.is_model_ready(LR, model_version="1")
    assert not c.is_model_ready("no_such_model")
    md = c.get_server_metadata(as_json=True)
    assert md["name"] == "hoist-server" and md["version"], md
    md = c.get_model_metadata(LR, as_json=True)
    assert md["name"] == LR and md["versions"] == ["1"], md
    assert [(i["name"], i["datatype"], [int(d) for d in i["shape"]]) for i in md["inputs"]] == [("input", "FP32", [-1, 30])]
    outputs = {o["name"]: (o["datatype"], [int(d) for d in o["shape"]]) for o in md["outputs"]}
    assert outputs == {"label": ("INT64", [-1]), "probabilities": ("FP32", [-1, 2])}, md
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("no_such_model")
    assert "not found" in str(e.value)


def test_raw_mode_equals_rest_and_reference(server):
    c = grpcclient.InferenceServerClient(url=server.grpc)
    x = reference_x()
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    outs = [grpcclient.InferRequestedOutput("label"), grpcclient.InferRequestedOutput("probabilities")]
    r = c.infer(LR, [inp], outputs=outs, request_id="abc")
    assert r.get_response().id == "abc"
    got = {n: r.as_numpy(n) for n in ("label", "probabilities")}
    clients.assert_outputs_match(LR, got)
    rest = rest_infer(server, x)
    np.testing.assert_array_equal(got["label"], rest["label"])
    np.testing.assert_array_equal(got["probabilities"], rest["probabilities"])
    # No outputs named: every output, raw.
    r = c.infer(LR, [inp])
    clients.assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")})


def test_plain_mode_equals_rest_and_reference(server):
    x = reference_x()
    req = service_pb2.ModelInferRequest(model_name=LR, id="plain")
    t = req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    t.contents.fp32_contents.extend(x.flatten().tolist())
    with grpc.insecure_channel(server.grpc) as ch:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=60)
    assert resp.id == "plain" and not resp.raw_output_contents
    got = {}
    for o in resp.outputs:
        if o.datatype == "INT64":
            got[o.name] = np.asarray(o.contents.int64_contents, dtype=np.int64).reshape(list(o.shape))
        else:
            got[o.name] = np.asarray(o.contents.fp32_contents, dtype=np.float32).reshape(list(o.shape))
    clients.assert_outputs_match(LR, got)
    rest = rest_infer(server, x)
    np.testing.assert_array_equal(got["label"], rest["label"])
    np.testing.assert_array_equal(got["probabilities"], rest["probabilities"])


def test_bad_input_is_invalid_argument_with_a_message(server):
    c = grpcclient.InferenceServerClient(url=server.grpc)
    x = reference_x()[:, :10]
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        c.infer(LR, [inp])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value
    assert "30" in e.value.message(), e.value
    with pytest.raises(InferenceServerException) as e:
        c.infer("no_such_model", [inp])
    assert e.value.status() == "StatusCode.NOT_FOUND", e.value
    # Still serving.
    assert c.is_server_ready()
