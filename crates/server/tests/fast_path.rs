//! The HTTP fast path (src/http/fast.rs) against the real `hoist-server` binary, with
//! raw bytes on a TCP connection to 127.0.0.1: what a client sees is the same
//! whether a request takes the fast path or hyper's, requests and their answers
//! stay in order on one keep-alive connection as it moves from one path to the
//! other, and framing the fast path does not take (chunked bodies, repeated or
//! signed lengths, oversize bodies, HTTP/1.0) gets hyper's answers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const INVOCATIONS: &str = "/invocations";
const INFER: &str = "/v2/models/breast_cancer_lr/infer";

/// An answer as it came off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-case names, in the order sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{} answered non-JSON {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn connect(server: &Server) -> BufReader<TcpStream> {
    let addr = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    BufReader::new(stream)
}

/// Reads one answer framed by `content-length` (or chunked, from hyper).
fn read_answer(conn: &mut BufReader<TcpStream>) -> Answer {
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header line");
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = answer.header("content-length") {
        let mut body = vec![0; len.parse().unwrap()];
        conn.read_exact(&mut body).unwrap();
        answer.body = body;
    } else if answer.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            answer.body.extend_from_slice(&chunk[..size]);
        }
    }
    answer
}

/// The bytes of a `POST path` with `body` and these extra header lines.
fn post(path: &str, extra: &[&str], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The same request with a chunked body: never on the fast path.
fn post_chunked(path: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    bytes
}

fn exchange(server: &Server, request: &[u8]) -> Answer {
    let mut conn = connect(server);
    conn.get_mut().write_all(request).unwrap();
    read_answer(&mut conn)
}

fn bodies(r: &Reference) -> (Vec<u8>, Vec<u8>) {
    let mlflow = json!({"inputs": [r.row(0), r.row(1)]})
        .to_string()
        .into_bytes();
    let v2 = v2_request(r, 0..2).to_string().into_bytes();
    (mlflow, v2)
}

#[test]
fn both_paths_give_the_same_answers_and_one_connection_keeps_them_in_order() {
    let r = Reference::load("breast_cancer_lr");
    let server = Server::start(&model_dir("breast_cancer_lr"), "tract", &[], &[]);
    let (mlflow, v2) = bodies(&r);

    // Each request on the fast path and, chunked, on hyper's: the same status,
    // content type and body.
    for (path, body) in [(INVOCATIONS, &mlflow), (INFER, &v2)] {
        let fast = exchange(&server, &post(path, &[], body));
        let hyper = exchange(&server, &post_chunked(path, body));
        assert_eq!(fast.status, 200, "{path}: {fast:?}");
        assert_eq!(fast.status, hyper.status, "{path}");
        assert_eq!(fast.json(), hyper.json(), "{path}");
        assert_eq!(fast.header("content-type"), Some("application/json"));
        assert_eq!(fast.header("content-type"), hyper.header("content-type"));
        assert!(fast.header("date").is_some(), "{fast:?}");
    }
    let answer = exchange(&server, &post(INFER, &[], &v2)).json();
    r.check(
        0,
        &as_i64(&v2_output(&answer, "label")),
        &v2_output(&answer, "probabilities"),
        "fast path",
    );

    // Errors too: an unknown model, a bad body.
    for (path, body) in [
        ("/v2/models/nope/infer", &v2[..]),
        ("/models/nope/invocations", &mlflow[..]),
        (INVOCATIONS, &b"{\"inputs\": [[1, 2]]}"[..]),
        (INFER, &b"not json"[..]),
    ] {
        let fast = exchange(&server, &post(path, &[], body));
        let hyper = exchange(&server, &post_chunked(path, body));
        assert!((400..500).contains(&fast.status), "{path}: {fast:?}");
        assert_eq!(
            (fast.status, fast.json()),
            (hyper.status, hyper.json()),
            "{path}"
        );
    }

    // Pipelined on one connection: fast, fast, then a GET (hyper from there on), then
    // a fast-path route again, now served by hyper; every answer in order.
    let mut conn = connect(&server);
    let mut burst = post(INVOCATIONS, &[], &mlflow);
    burst.extend(post(INFER, &[], &v2));
    burst.extend_from_slice(b"GET /v2/health/ready HTTP/1.1\r\nhost: test\r\n\r\n");
    burst.extend(post(INVOCATIONS, &[], &mlflow));
    conn.get_mut().write_all(&burst).unwrap();
    let answers: Vec<Answer> = (0..4).map(|_| read_answer(&mut conn)).collect();
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert!(answers[0].json()["predictions"].is_object());
    assert!(answers[1].json()["outputs"].is_array());
    assert_eq!(answers[0].json(), answers[3].json());

    // A body that arrives in pieces, one byte at a time at the end.
    let mut conn = connect(&server);
    let req = post(INVOCATIONS, &[], &mlflow);
    let (head, tail) = req.split_at(req.len() - 5);
    conn.get_mut().write_all(head).unwrap();
    for b in tail {
        std::thread::sleep(Duration::from_millis(5));
        conn.get_mut().write_all(std::slice::from_ref(b)).unwrap();
    }
    assert_eq!(read_answer(&mut conn).json(), answers[0].json());

    // Every one of those requests was counted, by route and status.
    let metrics = server.get("/metrics").text().unwrap();
    let count = |route: &str, code: u16| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("hoist_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("code=\"{code}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(count("/invocations", 200), 2 + 2 + 1, "{metrics}");
    assert_eq!(
        count("/v2/models/:model/infer", 200),
        2 + 1 + 1,
        "{metrics}"
    );
}

#[test]
fn framing_the_fast_path_does_not_take_gets_hypers_answers() {
    let r = Reference::load("breast_cancer_lr");
    let server = Server::start(
        &model_dir("breast_cancer_lr"),
        "tract",
        &["--max-body-bytes", "2000"],
        &[],
    );
    let (mlflow, _) = bodies(&r);

    // Two different lengths: ambiguous framing, a 400 and the connection closed.
    let mut req = post(INVOCATIONS, &["content-length: 3"], &mlflow);
    let answer = exchange(&server, &req);
    assert_eq!(answer.status, 400, "{answer:?}");
    // A signed length is not a length.
    req = format!("POST {INVOCATIONS} HTTP/1.1\r\nhost: t\r\ncontent-length: +5\r\n\r\n{{}}abc")
        .into_bytes();
    assert_eq!(exchange(&server, &req).status, 400);
    // A body over --max-body-bytes: 413 with the limit named, as axum says it.
    let big = json!({"inputs": vec![r.row(0); 40]})
        .to_string()
        .into_bytes();
    assert!(big.len() > 2000);
    let answer = exchange(&server, &post(INVOCATIONS, &[], &big));
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(
        answer.json()["message"].as_str().unwrap().contains("2000"),
        "{answer:?}"
    );
    // HTTP/1.0 and `Expect: 100-continue` work, through hyper.
    let mut req10 = format!(
        "POST {INVOCATIONS} HTTP/1.0\r\ncontent-length: {}\r\n\r\n",
        mlflow.len()
    )
    .into_bytes();
    req10.extend_from_slice(&mlflow);
    assert_eq!(exchange(&server, &req10).status, 200);
    let mut conn = connect(&server);
    let head = post(INVOCATIONS, &["expect: 100-continue"], b"");
    let head = String::from_utf8(head).unwrap().replace(
        "content-length: 0",
        &format!("content-length: {}", mlflow.len()),
    );
    conn.get_mut().write_all(head.as_bytes()).unwrap();
    let cont = read_answer(&mut conn);
    assert_eq!(cont.status, 100, "{cont:?}");
    conn.get_mut().write_all(&mlflow).unwrap();
    assert_eq!(read_answer(&mut conn).status, 200);
    // A percent-encoded model name is decoded (by axum), as before.
    let answer = exchange(
        &server,
        &post("/models/breast%5Fcancer%5Flr/invocations", &[], &mlflow),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    // The server still answers on the fast path after all that.
    assert_eq!(
        exchange(&server, &post(INVOCATIONS, &[], &mlflow)).status,
        200
    );
}

#[test]
fn connection_close_and_shutdown_end_connections_after_their_answer() {
    let r = Reference::load("breast_cancer_lr");
    let server = Server::start(&model_dir("breast_cancer_lr"), "tract", &[], &[]);
    let (mlflow, _) = bodies(&r);

    // `Connection: close`: the answer says so, then the server closes.
    let mut conn = connect(&server);
    conn.get_mut()
        .write_all(&post(INVOCATIONS, &["connection: close"], &mlflow))
        .unwrap();
    let answer = read_answer(&mut conn);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(
        conn.read_to_end(&mut rest).unwrap(),
        0,
        "closed after the answer"
    );

    // An idle keep-alive connection does not hold shutdown up: SIGTERM, the server
    // closes it and exits cleanly.
    let mut idle = connect(&server);
    idle.get_mut()
        .write_all(&post(INVOCATIONS, &[], &mlflow))
        .unwrap();
    assert_eq!(read_answer(&mut idle).status, 200);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0);
}

/// The value of the first `/metrics` line starting with `series`.
fn metric(server: &Server, series: &str) -> f64 {
    let text = server.get("/metrics").text().unwrap();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Many keep-alive connections at once, as a load generator opens them: with the
/// default flags a fast batching model folds the requests one I/O thread reads
/// together into one call (src/executor.rs). Each answer is still its own row's,
/// on both endpoints and both runtimes, and every row is run exactly once.
#[test]
fn concurrent_connections_each_get_their_own_rows_answer() {
    let r = Reference::load("breast_cancer_lr");
    for runtime in ["tract", "onnxruntime"] {
        let server = Server::start(&model_dir("breast_cancer_lr"), runtime, &[], &[]);
        let rows_before = metric(&server, "hoist_batch_size_sum{");
        let (connections, each) = (40, 12);
        std::thread::scope(|scope| {
            for c in 0..connections {
                let (server, r) = (&server, &r);
                scope.spawn(move || {
                    let mut conn = connect(server);
                    for i in 0..each {
                        let row = (c + i) % r.rows();
                        let v2 = i % 2 == 1;
                        let request = if v2 {
                            post(
                                INFER,
                                &[],
                                v2_request(r, row..row + 1).to_string().as_bytes(),
                            )
                        } else {
                            let body = json!({"inputs": [r.row(row)]}).to_string();
                            post(INVOCATIONS, &[], body.as_bytes())
                        };
                        conn.get_mut().write_all(&request).unwrap();
                        let answer = read_answer(&mut conn);
                        assert_eq!(answer.status, 200, "{runtime}: {:?}", answer);
                        let json = answer.json();
                        let (labels, probs) = if v2 {
                            (
                                as_i64(&v2_output(&json, "label")),
                                v2_output(&json, "probabilities"),
                            )
                        } else {
                            let p = &json["predictions"];
                            let nums = |v: &Value| -> Vec<f64> {
                                v.as_array()
                                    .unwrap()
                                    .iter()
                                    .flat_map(|x| match x.as_array() {
                                        Some(inner) => inner.clone(),
                                        None => vec![x.clone()],
                                    })
                                    .map(|x| x.as_f64().unwrap())
                                    .collect()
                            };
                            (as_i64(&nums(&p["label"])), nums(&p["probabilities"]))
                        };
                        let context = format!("{runtime}, connection {c}, request {i}");
                        r.check(row, &labels, &probs, &context);
                    }
                });
            }
        });
        let rows = metric(&server, "hoist_batch_size_sum{") - rows_before;
        assert_eq!(rows, (connections * each) as f64, "{runtime}: rows run");
    }
}
