//! The readiness probe: one HTTP/1.1 GET over a plain TCP stream, no HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The path `hoist-server` answers 200 on once the model is loaded and has answered
/// its input example.
pub(crate) const READY_PATH: &str = "/v2/health/ready";

/// The path MLflow's scoring server answers 200 on: it loads the model before it
/// listens, so a 200 means the model is loaded.
pub(crate) const MLFLOW_READY_PATH: &str = "/ping";

/// `GET path` on `addr`; the status code, or `None` when there is no (valid) answer
/// within `timeout`.
pub(crate) async fn get_status(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // Only the status line matters: `HTTP/1.1 200 OK\r\n`.
        let mut buf = Vec::with_capacity(64);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        parse_status_line(&buf)
    })
    .await
    .ok()
    .flatten()
}

/// The status code of an HTTP/1.x status line.
fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\nx: y\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 200\r\n"), Some(200));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[tokio::test]
    async fn probes_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
                "HTTP/1.1 200 OK\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).await.unwrap();
                assert!(req[..n].starts_with(b"GET /v2/health/ready HTTP/1.1\r\n"));
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let t = Duration::from_secs(5);
        assert_eq!(get_status(addr, READY_PATH, t).await, Some(503));
        assert_eq!(get_status(addr, READY_PATH, t).await, Some(200));
        server.await.unwrap();
        // Nobody listens any more.
        assert_eq!(get_status(addr, READY_PATH, t).await, None);
    }
}
