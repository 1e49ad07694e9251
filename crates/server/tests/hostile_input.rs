//! Hostile request bodies against the real `hoist-server` binary on 127.0.0.1, on both
//! runtimes: every one gets a 4xx (400, 413 or 415) whose JSON `error` names the
//! reason, never a 5xx, and the server answers a good request after each.
//!
//! The cases are classes of attack on sizes a client controls: shapes (overflowing,
//! huge, negative), element counts against the data sent, datatypes, the binary
//! tensor extension's lengths, JSON nesting, CSV width and quoting, base64, and image
//! dimensions declared in a tiny file.

mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

const RUNTIMES: &[&str] = &["onnxruntime", "tract"];
const INFER: &str = "/v2/models/breast_cancer_lr/infer";
const LIMIT: usize = 4 << 20;

/// One hostile request and what must come back.
struct Case {
    what: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// Must appear in the `error` message (case-insensitive).
    needle: &'static str,
}

fn case(what: &'static str, path: &'static str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        what,
        path,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
        status: 400,
        needle: "",
    }
}

impl Case {
    fn says(mut self, needle: &'static str) -> Case {
        self.needle = needle;
        self
    }
    fn status(mut self, status: u16) -> Case {
        self.status = status;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }
    /// Adds a header even if one of that name is there (a repeated header).
    fn also_header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }
}

fn v2(what: &'static str, body: Value) -> Case {
    case(what, INFER, body.to_string())
}

fn v2_input(what: &'static str, shape: Value, datatype: &str, data: Value) -> Case {
    v2(
        what,
        json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}),
    )
}

/// A binary-extension request: JSON header, then `binary`, with the header's length.
fn v2_binary(what: &'static str, header: Value, binary: &[u8]) -> Case {
    let json = header.to_string();
    let mut body = json.clone().into_bytes();
    body.extend_from_slice(binary);
    case(what, INFER, body)
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", json.len().to_string())
}

fn binary_input(shape: Value, datatype: &str, size: Value) -> Value {
    json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype,
        "parameters": {"binary_data_size": size}}]})
}

fn mlflow(what: &'static str, body: Value) -> Case {
    case(what, "/invocations", body.to_string())
}

fn csv(what: &'static str, text: impl Into<Vec<u8>>) -> Case {
    case(what, "/invocations", text).header("content-type", "text/csv")
}

fn zeros(n: usize) -> Value {
    json!(vec![0.0; n])
}

fn deep(n: usize) -> String {
    "[".repeat(n)
}

/// The hostile cases for a tabular model taking `input` FP32 [-1, 30].
fn tabular_cases() -> Vec<Case> {
    let wide_header: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    let wide_row = vec!["1"; 100_000];
    vec![
        // Shapes.
        v2_input("shape product overflows 64 bits", json!([4294967296u64, 4294967296u64]), "FP32", json!([]))
            .says("overflows"),
        v2_input("shape product wraps to the data length", json!([614891469123651721u64, 30]), "FP32", zeros(14))
            .says("overflows"),
        v2_input("huge shape that does not overflow", json!([1000000000, 1000000000]), "FP32", zeros(1))
            .says("1000000000000000000 elements but 1"),
        v2_input("negative dimension", json!([-1, 30]), "FP32", zeros(30)).says("negative"),
        v2_input("most negative dimension", json!([i64::MIN, 30]), "FP32", zeros(30)).says("negative"),
        v2_input("dimension past i64", json!([18446744073709551615u64, 30]), "FP32", zeros(30))
            .says("invalid inference request JSON"),
        v2_input("fractional dimension", json!([1.5, 30]), "FP32", zeros(30))
            .says("invalid inference request JSON"),
        v2_input("zero dimension", json!([0, 30]), "FP32", json!([])).says("empty"),
        v2_input("fewer values than the shape holds", json!([1, 30]), "FP32", zeros(29))
            .says("holds 30 elements but 29"),
        v2_input("more values than the shape holds", json!([1, 30]), "FP32", zeros(31))
            .says("holds 30 elements but 31"),
        // The model's shape: batch, features, rank; named expected vs got.
        v2_input("feature count the model does not take", json!([1, 31]), "FP32", zeros(31))
            .says("[1, 31], the model expects shape [-1, 30]"),
        v2_input("rows split differently", json!([2, 15]), "FP32", zeros(30))
            .says("[2, 15], the model expects shape [-1, 30]"),
        v2_input("rank the model does not take", json!([30]), "FP32", zeros(30))
            .says("the model expects shape [-1, 30]"),
        v2_input("scalar", json!([]), "FP32", zeros(1)).says("the model expects shape [-1, 30]"),
        // Datatypes and values.
        v2_input("datatype the model does not take", json!([1, 30]), "FP64", zeros(30))
            .says("the model expects FP32"),
        v2_input("BYTES for a numeric input", json!([1, 30]), "BYTES", json!(vec!["x"; 30]))
            .says("datatype BYTES"),
        v2_input("unsupported datatype", json!([1, 30]), "FP16", zeros(30)).says("FP16"),
        v2_input("integer out of range", json!([1]), "INT64", json!([1e300])).says("out of range"),
        v2_input("integer too big for INT8", json!([1]), "INT8", json!([300])).says("out of range"),
        v2_input("strings for numbers", json!([1, 30]), "FP32", json!(vec!["x"; 30])).says("element 0"),
        v2_input("ragged nested data", json!([2, 2]), "FP32", json!([[1, 2], [3]])).says("ragged"),
        v2_input("objects in data", json!([1]), "FP32", json!([{"a": 1}])).says("expected numbers"),
        case("100000 nested arrays in data", INFER,
            format!(r#"{{"inputs":[{{"name":"input","shape":[1],"datatype":"FP32","data":{}"#, deep(100_000)))
            .says("recursion limit"),
        case("100000 nested arrays as the body", INFER, deep(100_000)).says("recursion limit"),
        // The request's structure.
        v2("input sent twice", json!({"inputs": [
            {"name": "input", "shape": [1, 30], "datatype": "FP32", "data": zeros(30)},
            {"name": "input", "shape": [1, 30], "datatype": "FP32", "data": zeros(30)}]}))
            .says("sent twice"),
        v2("unknown output", json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
            "data": zeros(30)}], "outputs": [{"name": "nope"}]}))
            .says("unknown output 'nope'"),
        v2("outputs not a list", json!({"inputs": [], "outputs": 7})).says("invalid inference request JSON"),
        v2("inputs not a list", json!({"inputs": {"name": "input"}})).says("invalid inference request JSON"),
        v2("no data at all", json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32"}]}))
            .says("neither data nor binary_data_size"),
        case("not UTF-8", INFER, vec![0xff, 0xfe, 0x00, 0x7b]).says("invalid inference request JSON"),
        case("empty body", INFER, Vec::new()).says("invalid inference request JSON"),
        case("body over the limit", INFER, vec![b' '; LIMIT + 1]).status(413).says("--max-body-bytes"),
        // The binary tensor extension.
        case("header length past the body", INFER, "{}")
            .header("inference-header-content-length", "999999")
            .says("the body has 2 bytes"),
        case("header length past usize", INFER, "{}")
            .header("inference-header-content-length", "99999999999999999999999999")
            .says("non-negative integer"),
        case("negative header length", INFER, "{}")
            .header("inference-header-content-length", "-1")
            .says("non-negative integer"),
        case("header length sent twice", INFER, "{}")
            .header("inference-header-content-length", "2")
            .also_header("inference-header-content-length", "1")
            .says("more than once"),
        v2_binary("binary_data_size past the body", binary_input(json!([1, 30]), "FP32", json!(1u64 << 40)), &[0; 120])
            .says("only 120 bytes of binary data remain"),
        v2_binary("binary_data_size of u64::MAX", binary_input(json!([1, 30]), "FP32", json!(u64::MAX)), &[0; 120])
            .says("only 120 bytes"),
        v2_binary("negative binary_data_size", binary_input(json!([1, 30]), "FP32", json!(-8)), &[0; 120])
            .says("non-negative integer"),
        v2_binary("binary_data_size not what the shape needs", binary_input(json!([1, 30]), "FP32", json!(8)), &[0; 8])
            .says("needs 120 bytes but binary_data_size is 8"),
        v2_binary("binary shape overflowing", binary_input(json!([1u64 << 62, 8]), "FP32", json!(16)), &[0; 16])
            .says("overflows"),
        v2_binary("binary byte size overflowing", binary_input(json!([1u64 << 62]), "FP32", json!(4)), &[0; 4])
            .says("byte size overflows"),
        v2_binary("BYTES length prefix past the data",
            binary_input(json!([1]), "BYTES", json!(8)), &[0xff, 0xff, 0xff, 0xff, b'a', b'b', b'c', b'd'])
            .says("longer than the data sent"),
        v2_binary("binary data nobody claims",
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": zeros(30)}]}), &[0; 7])
            .says("no input claims them"),
        v2_binary("both data and binary_data_size",
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": zeros(30),
                "parameters": {"binary_data_size": 120}}]}), &[0; 120])
            .says("both data and binary_data_size"),
        // MLflow bodies.
        mlflow("instances of uneven depth", json!({"instances": [[1, 2], [[3, 4]]]})).says("ragged"),
        mlflow("instances with a scalar row", json!({"instances": [[1, 2], 3]})).says("ragged"),
        mlflow("inputs with 31 features", json!({"inputs": [vec![0.0; 31]]})).says("[-1, 30]"),
        mlflow("inputs with rows of 15", json!({"inputs": [vec![0.0; 15], vec![0.0; 15]]})).says("[-1, 30]"),
        case("100000 nested arrays in inputs", "/invocations", format!(r#"{{"inputs": {}"#, deep(100_000)))
            .says("recursion limit"),
        case("number past f64", "/invocations", r#"{"inputs": [[1e400]]}"#).says("not valid JSON"),
        mlflow("dataframe_split columns and data disagree",
            json!({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2], [3, 4]]}}))
            .says("3 columns named but rows have 2 values"),
        mlflow("dataframe_split ragged rows", json!({"dataframe_split": {"data": [vec![0.0; 30], vec![0.0; 29]]}}))
            .says("row 1 has 29 values"),
        mlflow("dataframe_split data not a list", json!({"dataframe_split": {"data": 5}})).says("'data'"),
        mlflow("dataframe_split columns not names", json!({"dataframe_split": {"columns": 5, "data": [[1]]}}))
            .says("columns"),
        mlflow("dataframe_records missing a column", json!({"dataframe_records": [{"a": 1}, {"b": 2}]}))
            .says("has no column 'a'"),
        mlflow("two styles at once", json!({"inputs": [[1]], "instances": [[1]]})).says("exactly one of the keys"),
        csv("CSV with 100000 columns", format!("{}\n{}\n", wide_header.join(","), wide_row.join(",")))
            .says("the model expects shape [-1, 30]"),
        csv("CSV with ragged rows", "a,b,c\n1,2,3\n4,5\n").says("row 1 has 2 values"),
        csv("CSV quote never closed", "a,b\n\"1,2\n").says("never closed"),
        csv("CSV quoted commas shift no columns", "a,b\n\"1,5\",2\n").says("got \"1,5\""),
        csv("CSV not UTF-8", vec![b'a', b'\n', 0xff, 0xfe]).says("UTF-8"),
        csv("CSV empty", "\n\n").says("empty"),
        case("unsupported content type", "/invocations", "x").header("content-type", "image/png").status(415)
            .says("content types"),
        case("MLflow body over the limit", "/invocations", vec![b' '; LIMIT + 1]).status(413).says("limit"),
    ]
}

/// A PNG of `w` x `h` RGB pixels whose only pixel data is one empty row: what a
/// decoder learns from the header alone is the size it claims.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // zlib stream of a single zero byte, stored.
    chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x01, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01, 0x00, 0x01,
        ],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn image(what: &'static str, image: Value) -> Case {
    case(
        what,
        "/predict-image",
        json!({ "image": image }).to_string(),
    )
}

fn image_cases() -> Vec<Case> {
    vec![
        image(
            "a 1-KB PNG claiming 60000x60000",
            json!(b64(&png_claiming(60_000, 60_000))),
        )
        .says("60000x60000"),
        image(
            "a PNG claiming 4294967295x4294967295",
            json!(b64(&png_claiming(u32::MAX, u32::MAX))),
        )
        .says("could not decode"),
        image(
            "a PNG claiming 5000x5000",
            json!(b64(&png_claiming(5000, 5000))),
        )
        .says("5000x5000"),
        image("a PNG claiming 0x0", json!(b64(&png_claiming(0, 0)))).says("could not decode"),
        image(
            "a PNG whose pixels are missing",
            json!(b64(&png_claiming(64, 64))),
        )
        .says("could not decode"),
        image(
            "a PNG cut after its signature",
            json!(b64(b"\x89PNG\r\n\x1a\n")),
        )
        .says("could not decode"),
        image("base64 garbage", json!("%%%not base64%%%")).says("invalid base64"),
        image("base64 with bad padding", json!("QUJD=A")).says("invalid base64"),
        image("base64 of no image", json!(b64(b"hello, not a picture"))).says("could not decode"),
        image("a data URL without data", json!("data:image/png;base64")).says("could not decode"),
        image("image is a number", json!(5)).says("base64 string"),
        image("image is empty", json!("")).says("empty or missing"),
        case("60000 nested arrays", "/predict-image", deep(60_000)).says("recursion limit"),
        case("not JSON", "/predict-image", "image=abc").says("must be JSON"),
    ]
}

/// Sends `c`, checks the answer, then checks a good request still gets a 200.
fn check(s: &Server, c: &Case, good: &(String, Value), runtime: &str) {
    let client = client();
    let mut req = client.post(s.url(c.path)).body(c.body.clone());
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let resp = req
        .send()
        .unwrap_or_else(|e| panic!("{} ({runtime}): {e}", c.what));
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "{} ({runtime}): answered {status} with non-JSON {text:?}",
            c.what
        )
    });
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{} ({runtime}): no error message in {body}", c.what));
    assert_eq!(status, c.status, "{} ({runtime}): {msg}", c.what);
    assert!(
        msg.to_lowercase().contains(&c.needle.to_lowercase()),
        "{} ({runtime}): {msg:?} should mention {:?}",
        c.what,
        c.needle
    );
    assert!(
        msg.len() < 2000,
        "{} ({runtime}): a {}-byte message",
        c.what,
        msg.len()
    );
    let (status, resp) = s.post_json(&good.0, &good.1);
    assert_eq!(status, 200, "after {} ({runtime}): {resp}", c.what);
}

fn assert_no_500(s: &Server, runtime: &str) {
    let metrics = s.get("/metrics").text().unwrap();
    assert_eq!(requests_with_code(&metrics, 500), 0, "{runtime}: {metrics}");
    assert!(
        !s.stderr().contains("panicked"),
        "{runtime}: {}",
        s.stderr()
    );
}

#[test]
fn hostile_bodies_get_a_4xx_with_the_reason_on_both_runtimes() {
    let limit = LIMIT.to_string();
    let good = (
        INFER.to_string(),
        v2_request(&Reference::load("breast_cancer_lr"), 0..1),
    );
    let cases = tabular_cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for runtime in RUNTIMES {
        let s = Server::start(
            &model_dir("breast_cancer_lr"),
            runtime,
            &["--max-body-bytes", &limit],
            &[],
        );
        for c in &cases {
            check(&s, c, &good, runtime);
        }
        assert_no_500(&s, runtime);
    }
}

#[test]
fn hostile_images_get_a_400_with_the_reason() {
    let dir = model_dir("image_cnn");
    let red = std::fs::read(dir.join("images/red.png")).unwrap();
    let good = ("/predict-image".to_string(), json!({ "image": b64(&red) }));
    let cases = image_cases();
    // A small body limit: the decoded size is judged apart from it (at least 64 MiB).
    let s = Server::start(&dir, "tract", &["--max-body-bytes", "65536"], &[]);
    for c in &cases {
        check(&s, c, &good, "tract");
    }
    assert_no_500(&s, "tract");
}

#[test]
fn quoted_csv_fields_are_read_as_one_value() {
    let s = Server::start(&model_dir("breast_cancer_lr"), "tract", &[], &[]);
    let r = Reference::load("breast_cancer_lr");
    let header: Vec<String> = (0..30).map(|i| format!("\"feature, {i}\"")).collect();
    let row: Vec<String> = r.row(0).iter().map(|x| format!("\"{x}\"")).collect();
    let resp = client()
        .post(s.url("/invocations"))
        .header("content-type", "text/csv")
        .body(format!("{}\n{}\n", header.join(","), row.join(",")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["predictions"]["label"][0], json!(r.labels[0]), "{v}");
}
