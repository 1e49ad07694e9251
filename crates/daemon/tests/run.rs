//! `hoist_daemon::run(listeners, shutdown, options)`: listeners bound on 127.0.0.1:0
//! by the caller, and every server the daemon starts (API, gateway) stops when the one
//! shutdown future completes.

use std::sync::Arc;
use std::time::Duration;

use hoist_daemon::{Listeners, Options};
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_release::config::Config;
use hoist_targets::ServerProgram;
use tokio::net::TcpListener;

fn config() -> Config {
    let text = r#"
[model]
name = "m"

[[environments]]
name = "production"
listen = "127.0.0.1:1"
"#;
    Config::parse(text, "hoist.toml").unwrap()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> reqwest::Result<reqwest::StatusCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Ok(client
        .get(format!("http://{addr}{path}"))
        .send()
        .await?
        .status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_stops_on_the_one_shutdown_future() {
    let home = std::env::temp_dir().join(format!("hoist-daemon-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let registry = Arc::new(EmbeddedRegistry::open(&home).unwrap());
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_addr, gateway_addr) = (api.local_addr().unwrap(), gateway.local_addr().unwrap());
    let listeners = Listeners {
        api,
        // Given, so the config's `listen` (a port nobody may bind) is not used.
        gateways: vec![("production".into(), gateway)],
    };
    let options = Options {
        config: config(),
        home: home.clone(),
        registry: registry.clone(),
        embedded: Some(registry),
        program: ServerProgram::binary("/nonexistent/hoist-server"),
        token: Some(hoist_types::Secret::value("t0ken")),
        base_dir: home.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(hoist_daemon::run(
        listeners,
        async {
            let _ = stopped.await;
        },
        options,
    ));

    // Both answer while it runs: the API, and the gateway (503: nothing deployed yet).
    let mut up = false;
    for _ in 0..200 {
        if get(api_addr, "/healthz")
            .await
            .is_ok_and(|s| s.is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the API at {api_addr} never answered");
    let g = get(gateway_addr, "/invocations")
        .await
        .expect("the gateway answers");
    assert!(
        !g.is_success(),
        "nothing is deployed, yet the gateway answered {g}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("daemon/api"))
            .unwrap()
            .trim(),
        format!("http://{api_addr}")
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("run returns after the shutdown future")
        .unwrap()
        .unwrap();
    assert!(
        get(api_addr, "/healthz").await.is_err(),
        "the API still answers"
    );
    assert!(
        get(gateway_addr, "/invocations").await.is_err(),
        "the gateway still answers"
    );
    let _ = std::fs::remove_dir_all(&home);
}
