//! hoist-oci against a REAL registry (Debian's `docker-registry` on 127.0.0.1,
//! plain and TLS + htpasswd), checked with `skopeo`.

use std::collections::BTreeMap;

use hoist_oci::{
    Blob, Client, ClientOptions, Credentials, Error, ImageSpec, LayerBuilder, Manifest, Reference,
};
use hoist_testkit::registry::{self, PASSWORD, Registry, USER, skopeo};

/// A small image: a "binary", a config file, and `extra` bytes of pseudo-random data.
fn image(extra: usize) -> Manifest {
    let mut base = LayerBuilder::new(1_700_000_000);
    base.bytes("usr/local/bin/app", b"#!/bin/true\n".to_vec(), true)
        .unwrap();
    base.bytes("etc/app.conf", b"x = 1\n".to_vec(), false)
        .unwrap();
    let mut data = LayerBuilder::new(1_700_000_000);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let bytes: Vec<u8> = (0..extra)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    data.bytes("data/blob.bin", bytes, false).unwrap();
    let labels = BTreeMap::from([
        (
            "org.opencontainers.image.version".to_string(),
            "0.1.0".to_string(),
        ),
        (
            "org.opencontainers.image.revision".to_string(),
            "abc123".to_string(),
        ),
    ]);
    ImageSpec {
        created: 1_700_000_000,
        labels,
        entrypoint: vec!["/usr/local/bin/app".into()],
        user: "65532".into(),
        working_dir: "/".into(),
        ..Default::default()
    }
    .build(vec![base.build().unwrap(), data.build().unwrap()])
}

fn connect(reg: &Registry, repo: &str, options: ClientOptions) -> Result<Client, Error> {
    let r = Reference::parse(&format!("{}/{repo}", reg.addr)).unwrap();
    Client::connect(&r, options)
}

fn inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(extra);
    let target = format!("docker://{reference}");
    args.push(&target);
    serde_json::from_str(&skopeo(&args)).unwrap()
}

#[test]
fn a_pushed_image_is_what_skopeo_sees_and_a_second_push_uploads_nothing() {
    let reg = Registry::start();
    let img = image(200_000);
    let client = connect(&reg, "team/app", ClientOptions::default()).unwrap();
    assert_eq!(client.scheme(), "http", "a loopback registry without TLS");
    let tags = vec!["0.1.0".to_string(), "git-abc123".to_string()];
    let first = client.push(&img, &tags).unwrap();
    assert_eq!((first.uploaded, first.skipped), (3, 0));
    assert_eq!(reg.blob_puts(), 3);

    for tag in &tags {
        let v = inspect(&format!("{}/team/app:{tag}", reg.addr), &[]);
        assert_eq!(v["Digest"], img.manifest.digest.as_str());
        assert_eq!(v["Labels"]["org.opencontainers.image.revision"], "abc123");
        assert_eq!(
            v["Labels"]["org.opencontainers.image.created"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
        assert_eq!(v["Architecture"], "amd64");
    }
    let config = inspect(&format!("{}/team/app:0.1.0", reg.addr), &["--config"]);
    assert_eq!(config["config"]["User"], "65532");

    // The same inputs build the same bytes; pushing them again uploads no blob.
    let again = image(200_000);
    assert_eq!(again.manifest.digest, img.manifest.digest);
    let second = client.push(&again, &tags).unwrap();
    assert_eq!((second.uploaded, second.skipped), (0, 3));
    assert_eq!(reg.blob_puts(), 3, "no blob PUT on the second push");

    // Pulled back, every byte matches its digest.
    let m = client.get_manifest("0.1.0").unwrap();
    assert_eq!(m.digest, img.manifest.digest);
    assert_eq!(
        client.get_blob(&img.layers[1].digest).unwrap(),
        img.layers[1].bytes
    );
}

#[test]
fn large_blobs_go_up_in_chunks() {
    let reg = Registry::start();
    let img = image(600_000);
    let opts = ClientOptions {
        chunk_size: 128 << 10,
        ..Default::default()
    };
    let client = connect(&reg, "chunked", opts).unwrap();
    let report = client.push(&img, &["v1".to_string()]).unwrap();
    assert_eq!(report.uploaded, 3);
    let big = img.layers[1].bytes.len();
    assert!(big > 3 * (128 << 10), "the data layer is {big} bytes");
    assert_eq!(reg.blob_patches(), big.div_ceil(128 << 10));
    let v = inspect(&format!("{}/chunked:v1", reg.addr), &[]);
    assert_eq!(v["Digest"], img.manifest.digest.as_str());
    assert_eq!(client.get_blob(&img.layers[1].digest).unwrap().len(), big);
}

#[test]
fn a_push_that_fails_halfway_leaves_no_tag() {
    let reg = Registry::start();
    let mut img = image(1000);
    // The second layer's bytes no longer match its digest: the registry refuses it.
    let good = img.layers[1].clone();
    img.layers[1] = Blob {
        bytes: b"not the layer".to_vec(),
        ..good
    };
    let client = connect(&reg, "half", ClientOptions::default()).unwrap();
    let e = client.push(&img, &["v1".to_string()]).unwrap_err();
    assert!(e.to_string().contains("DIGEST_INVALID"), "{e}");
    let e = client.get_manifest("v1").unwrap_err();
    assert!(matches!(e, Error::ManifestUnknown { .. }), "{e}");
    assert_eq!(e.exit_code(), 12);
    assert!(e.to_string().contains("manifest unknown"), "{e}");
}

#[test]
fn tls_and_basic_auth_with_each_failure_named() {
    let reg = Registry::start_tls();
    let ca = reg.ca.clone().unwrap();
    let creds = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let ok = ClientOptions {
        ca_file: Some(ca.clone()),
        credentials: Some(creds.clone()),
        ..Default::default()
    };
    let client = connect(&reg, "secure/app", ok.clone()).unwrap();
    assert_eq!(client.scheme(), "https");
    let img = image(1000);
    client.push(&img, &["v1".to_string()]).unwrap();
    let v = inspect(
        &format!("{}/secure/app:v1", reg.addr),
        &["--creds", &format!("{USER}:{PASSWORD}")],
    );
    assert_eq!(v["Digest"], img.manifest.digest.as_str());

    // No credentials, and wrong ones: 401, exit 9, saying how to give them.
    for creds in [
        None,
        Some(Credentials {
            username: USER.into(),
            password: "wrong".into(),
        }),
    ] {
        let opts = ClientOptions {
            credentials: creds,
            ..ok.clone()
        };
        let e = connect(&reg, "secure/app", opts).err().expect("refused");
        assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
        assert_eq!(e.exit_code(), 9);
        assert!(e.to_string().contains("HOIST_REGISTRY_USERNAME"), "{e}");
    }
    // Without the CA the certificate is not trusted: unreachable, exit 8, saying why.
    let opts = ClientOptions {
        ca_file: None,
        ..ok.clone()
    };
    let e = connect(&reg, "secure/app", opts).err().expect("untrusted");
    assert_eq!(e.exit_code(), 8, "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // --insecure accepts it.
    let opts = ClientOptions {
        ca_file: None,
        insecure: true,
        ..ok
    };
    let client = connect(&reg, "secure/app", opts).unwrap();
    assert_eq!(
        client.get_manifest("v1").unwrap().digest,
        img.manifest.digest
    );
    // A blob that is not there: 404, exit 11.
    let e = client
        .get_blob(&format!("sha256:{}", "0".repeat(64)))
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert_eq!(e.exit_code(), 11);
}

#[test]
fn unreachable_and_forbidden_registries_get_their_own_exit_codes() {
    // Nothing listens on this port.
    let port = hoist_testkit::free_port();
    let r = Reference::parse(&format!("127.0.0.1:{port}/x")).unwrap();
    let e = Client::connect(&r, ClientOptions::default()).err().unwrap();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert_eq!(e.exit_code(), 8);

    // Debian's registry never answers 403 (htpasswd has no per-repository rights), so
    // a stand-in does, the way a registry's access control would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in listener.incoming().take(4) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
            let _ = write!(
                s,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let r = Reference::parse(&format!("{addr}/team/app")).unwrap();
    let e = Client::connect(&r, ClientOptions::default()).err().unwrap();
    assert!(matches!(e, Error::Forbidden { .. }), "{e}");
    assert_eq!(e.exit_code(), 10);
    assert!(e.to_string().contains("denied"), "{e}");
    let _ = registry::USER;
}
