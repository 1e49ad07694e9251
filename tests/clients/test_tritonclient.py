"""hoist-server against the real Triton HTTP client (`tritonclient.http`).

What tritonclient 2.73 puts on the wire (seen with a capturing server):
  * binary mode (its default): no Content-Type header; an
    `Inference-Header-Content-Length: N` header; the first N bytes of the body
    are the JSON header, e.g.
      {"inputs":[{"name":"input","shape":[2,30],"datatype":"FP32",
                  "parameters":{"binary_data_size":240}}],
       "outputs":[{"name":"label","parameters":{"binary_data":true}}, ...]}
    followed by the raw little-endian tensor bytes;
  * no outputs named: `"parameters":{"binary_data_output":true}` at the top level
    and no "outputs" key;
  * JSON mode: plain JSON body (still no Content-Type), flat "data" lists and
    `"parameters":{"binary_data":false}` on each requested output.
A non-200 answer must be JSON with an "error" key, or the client reports a
decoding failure instead of the server's message.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import LR, MODELS, assert_outputs_match, load_reference, ref_array, runtimes


def client(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=server.host_port, connection_timeout=30, network_timeout=60)


def lr_inputs(binary: bool, rows: slice = slice(None)) -> tuple[list, np.ndarray]:
    ref = load_reference(LR)
    x = ref_array(ref["inputs"]["input"])[rows]
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return [inp], x


def test_server_live_and_ready(lr_server):
    c = client(lr_server)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready(LR)


def test_unknown_model_not_ready(lr_server):
    assert not client(lr_server).is_model_ready("no_such_model")


def test_server_metadata(lr_server):
    md = client(lr_server).get_server_metadata()
    assert md["name"], md
    assert md["version"], md
    assert "binary_tensor_data" in md["extensions"], md


def test_model_metadata(lr_server):
    md = client(lr_server).get_model_metadata(LR)
    assert md["name"] == LR
    inputs = [{k: i.get(k) for k in ("name", "datatype", "shape")} for i in md["inputs"]]
    assert inputs == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}], md
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in md["outputs"]}
    assert outputs == {"label": ("INT64", [-1]), "probabilities": ("FP32", [-1, 2])}, md


def test_model_version_routes(lr_server):
    """If the server lists versions, the /versions/{v} routes answer for them."""
    c = client(lr_server)
    md = c.get_model_metadata(LR)
    for v in md.get("versions") or []:
        assert c.is_model_ready(LR, model_version=str(v))
        assert c.get_model_metadata(LR, model_version=str(v))["name"] == LR
        inputs, _ = lr_inputs(binary=True, rows=slice(0, 3))
        r = c.infer(LR, inputs, model_version=str(v))
        assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")}, rows=slice(0, 3))


def _check_binary(result, names):
    for n in names:
        out = result.get_output(n)
        assert out is not None, f"output {n} missing from {result.get_response()}"
        assert "binary_data_size" in (out.get("parameters") or {}), (
            f"output {n} was asked for in binary but came back as {out}"
        )
        assert "data" not in out, out


def test_infer_binary_named_outputs(lr_server):
    inputs, _ = lr_inputs(binary=True)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("label", "probabilities")]
    r = client(lr_server).infer(LR, inputs, outputs=outputs, request_id="req-1")
    _check_binary(r, ("label", "probabilities"))
    assert r.get_response().get("model_name") == LR
    assert r.get_response().get("id") == "req-1"
    assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")})


def test_infer_binary_no_outputs_named(lr_server):
    """No outputs named: the client sets binary_data_output and expects every output."""
    inputs, _ = lr_inputs(binary=True)
    r = client(lr_server).infer(LR, inputs)
    _check_binary(r, ("label", "probabilities"))
    assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")})


def test_infer_binary_one_output(lr_server):
    inputs, _ = lr_inputs(binary=True)
    r = client(lr_server).infer(LR, inputs, outputs=[httpclient.InferRequestedOutput("probabilities")])
    assert [o["name"] for o in r.get_response()["outputs"]] == ["probabilities"]
    ref = load_reference(LR)
    np.testing.assert_allclose(
        r.as_numpy("probabilities"), ref_array(ref["outputs"]["probabilities"]), atol=1e-4, rtol=0
    )


def test_infer_json_mode(lr_server):
    inputs, _ = lr_inputs(binary=False)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
    r = client(lr_server).infer(LR, inputs, outputs=outputs)
    for n in ("label", "probabilities"):
        out = r.get_output(n)
        assert out is not None and "data" in out, r.get_response()
        assert "binary_data_size" not in (out.get("parameters") or {}), out
    assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")})


def test_infer_json_input_binary_output(lr_server):
    inputs, _ = lr_inputs(binary=False)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("label", "probabilities")]
    r = client(lr_server).infer(LR, inputs, outputs=outputs)
    _check_binary(r, ("label", "probabilities"))
    assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")})


def test_infer_binary_input_json_output(lr_server):
    inputs, _ = lr_inputs(binary=True)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
    r = client(lr_server).infer(LR, inputs, outputs=outputs)
    assert all("data" in r.get_output(n) for n in ("label", "probabilities")), r.get_response()
    assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")})


def test_infer_single_row(lr_server):
    inputs, _ = lr_inputs(binary=True, rows=slice(4, 5))
    r = client(lr_server).infer(LR, inputs)
    assert_outputs_match(LR, {n: r.as_numpy(n) for n in ("label", "probabilities")}, rows=slice(4, 5))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_wrong_shape_is_an_error_naming_the_input(lr_server, binary):
    inp = httpclient.InferInput("input", [2, 7], "FP32")
    inp.set_data_from_numpy(np.ones((2, 7), np.float32), binary_data=binary)
    with pytest.raises(InferenceServerException) as e:
        client(lr_server).infer(LR, [inp])
    assert "input" in e.value.message(), e.value
    assert e.value.status() == "400", (e.value.status(), e.value.message())
    assert "exception occurred in the client" not in e.value.message(), (
        "error body was not JSON with an 'error' key: " + e.value.message()
    )


def test_wrong_datatype_is_an_error(lr_server):
    inp = httpclient.InferInput("input", [1, 30], "INT32")
    inp.set_data_from_numpy(np.ones((1, 30), np.int32), binary_data=True)
    with pytest.raises(InferenceServerException) as e:
        client(lr_server).infer(LR, [inp])
    assert e.value.status() == "400", (e.value.status(), e.value.message())
    assert "input" in e.value.message(), e.value


def test_unknown_model_infer_is_an_error(lr_server):
    inputs, _ = lr_inputs(binary=True, rows=slice(0, 1))
    with pytest.raises(InferenceServerException) as e:
        client(lr_server).infer("no_such_model", inputs)
    assert e.value.status() in ("400", "404"), (e.value.status(), e.value.message())
    assert "exception occurred in the client" not in e.value.message(), e.value.message()


# Every example model that has a reference.json, through the binary path.
# tract cannot run the tree ensembles (see INTERFACES.md), so it gets the others.
def _model_cases():
    models = sorted(p.name for p in MODELS.iterdir() if (p / "reference.json").exists())
    cases = []
    for rt in runtimes():
        for m in models:
            if rt == "tract" and m not in ("breast_cancer_lr", "digits_mlp", "image_cnn"):
                continue
            cases.append(pytest.param(m, rt, id=f"{m}-{rt}"))
    return cases


@pytest.mark.parametrize("model,rt", _model_cases())
def test_every_example_model_matches_reference(servers, model, rt):
    server = servers(model, rt)
    ref = load_reference(model)
    inputs = []
    for name, tensor in ref["inputs"].items():
        x = ref_array(tensor)
        inp = httpclient.InferInput(name, list(x.shape), tensor["datatype"])
        inp.set_data_from_numpy(x, binary_data=True)
        inputs.append(inp)
    r = client(server).infer(model, inputs)
    assert_outputs_match(model, {n: r.as_numpy(n) for n in ref["outputs"]})


def test_raw_v2_json_nested_data(lr_server):
    """Open Inference Protocol JSON without tritonclient: row-major data may be nested."""
    import requests

    ref = load_reference(LR)
    x = ref_array(ref["inputs"]["input"])[:3]
    body = {"id": "n1", "inputs": [{"name": "input", "shape": [3, 30], "datatype": "FP32", "data": x.tolist()}]}
    r = requests.post(f"{lr_server.url}/v2/models/{LR}/infer", json=body, timeout=60)
    assert r.status_code == 200, (r.status_code, r.text[:1000])
    out = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}
    assert r.json().get("id") == "n1", r.json()
    assert_outputs_match(LR, out, rows=slice(0, 3))


def test_raw_v2_error_body(lr_server):
    """Errors are JSON objects with an "error" string (what tritonclient reads)."""
    import requests

    body = {"inputs": [{"name": "nope", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]}
    r = requests.post(f"{lr_server.url}/v2/models/{LR}/infer", json=body, timeout=60)
    assert r.status_code == 400, (r.status_code, r.text[:1000])
    assert isinstance(r.json().get("error"), str) and r.json()["error"], r.text
