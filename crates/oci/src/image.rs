//! The OCI image config and manifest (image-spec v1.1), and model artifacts.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::Blob;
use crate::layer::Layer;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The empty descriptor's content (`{}`), the config of an artifact.
pub const ARTIFACT_CONFIG_EMPTY: &[u8] = b"{}";
/// The `artifactType` of a model package pushed alone (`hoist model push`).
pub const MODEL_ARTIFACT_TYPE: &str = "application/vnd.hoist.model.v1";
/// The media type of the model package's one layer (a gzipped tar of its files).
pub const MODEL_LAYER_MEDIA: &str = "application/vnd.hoist.model.layer.v1.tar+gzip";

/// `secs` since the epoch as RFC 3339 in UTC, to the second.
pub fn rfc3339(secs: u64) -> String {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = hoist_types::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// What a runnable image is made of, besides its layers' files.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// Seconds since the epoch (`SOURCE_DATE_EPOCH`): the config's `created` and
    /// the `org.opencontainers.image.created` label.
    pub created: u64,
    /// `config.Labels` (also the manifest's annotations).
    pub labels: BTreeMap<String, String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// `config.User`, e.g. `65532` (no root).
    pub user: String,
    pub working_dir: String,
    pub exposed_ports: Vec<String>,
}

/// A built image: its layers, config and manifest, ready to push.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
}

impl Manifest {
    /// Layers + config + manifest bytes: what a registry stores for it.
    pub fn size(&self) -> u64 {
        (self.layers.iter().map(|b| b.bytes.len()).sum::<usize>()
            + self.config.bytes.len()
            + self.manifest.bytes.len()) as u64
    }
}

impl ImageSpec {
    /// The config and manifest over `layers` (linux/amd64). Same inputs, same bytes.
    pub fn build(&self, layers: Vec<Layer>) -> Manifest {
        let created = rfc3339(self.created);
        let mut labels = self.labels.clone();
        labels
            .entry("org.opencontainers.image.created".into())
            .or_insert_with(|| created.clone());
        let mut config = json!({
            "User": self.user,
            "Env": self.env,
            "Entrypoint": self.entrypoint,
            "WorkingDir": self.working_dir,
            "Labels": labels,
        });
        if !self.cmd.is_empty() {
            config["Cmd"] = json!(self.cmd);
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            config["ExposedPorts"] = Value::Object(ports);
        }
        let config = json!({
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|_| json!({"created": created, "created_by": "hoist image push"})).collect::<Vec<_>>(),
        });
        let config = Blob::new(
            MEDIA_CONFIG,
            serde_json::to_vec(&config).expect("json serializes"),
        );
        let blobs: Vec<Blob> = layers.into_iter().map(|l| l.blob).collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.descriptor(),
            "layers": blobs.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            "annotations": labels,
        });
        let manifest = Blob::new(
            MEDIA_MANIFEST,
            serde_json::to_vec(&manifest).expect("json serializes"),
        );
        Manifest {
            layers: blobs,
            config,
            manifest,
        }
    }
}

/// A model package as an OCI artifact: `artifactType` [`MODEL_ARTIFACT_TYPE`], the
/// empty config, one layer of [`MODEL_LAYER_MEDIA`], and `annotations`.
pub fn artifact_manifest(layer: Layer, annotations: &BTreeMap<String, String>) -> Manifest {
    let config = Blob::new(MEDIA_EMPTY, ARTIFACT_CONFIG_EMPTY.to_vec());
    let mut desc = layer.blob.descriptor();
    desc["annotations"] = json!({"org.opencontainers.image.title": "model.tar.gz"});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "artifactType": MODEL_ARTIFACT_TYPE,
        "config": config.descriptor(),
        "layers": [desc],
        "annotations": annotations,
    });
    Manifest {
        layers: vec![layer.blob],
        config,
        manifest: Blob::new(
            MEDIA_MANIFEST,
            serde_json::to_vec(&manifest).expect("json serializes"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LayerBuilder;

    #[test]
    fn created_is_rfc3339_from_source_date_epoch() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_manifest_points_at_the_config_and_layers_by_digest() {
        let mut l = LayerBuilder::new(5);
        l.bytes("bin/x", b"#!".to_vec(), true).unwrap();
        let layer = l.build().unwrap();
        let diff_id = layer.diff_id.clone();
        let spec = ImageSpec {
            created: 5,
            user: "65532".into(),
            entrypoint: vec!["/bin/x".into()],
            ..Default::default()
        };
        let m = spec.build(vec![layer]);
        let v: Value = serde_json::from_slice(&m.manifest.bytes).unwrap();
        assert_eq!(v["config"]["digest"], m.config.digest.as_str());
        assert_eq!(v["config"]["mediaType"], MEDIA_CONFIG);
        assert_eq!(v["layers"][0]["digest"], m.layers[0].digest.as_str());
        assert_eq!(v["layers"][0]["size"], m.layers[0].bytes.len());
        let c: Value = serde_json::from_slice(&m.config.bytes).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0], diff_id.as_str());
        assert_eq!(c["config"]["User"], "65532");
        assert_eq!(
            c["config"]["Labels"]["org.opencontainers.image.created"],
            "1970-01-01T00:00:05Z"
        );
    }
}
