//! Signatures and attestations where cosign stores and looks for them.
//!
//! - A signature: the tag `sha256-<hex>.sig` in the image's repository names an OCI
//!   manifest whose layers are simple-signing payloads
//!   (`application/vnd.dev.cosign.simplesigning.v1+json`:
//!   `{"critical": {"identity": {"docker-reference"}, "image":
//!   {"docker-manifest-digest"}, "type": "cosign container image signature"},
//!   "optional": null}`), each with its ECDSA signature (DER, base64) in the
//!   annotation `dev.cosignproject.cosign/signature`.
//! - An attestation: the tag `sha256-<hex>.att`, layers of DSSE envelopes
//!   (`application/vnd.dsse.envelope.v1+json`) over an in-toto statement, the
//!   annotation `predicateType` naming its predicate.
//!
//! Signing adds a layer to what is there (cosign does the same); verification
//! accepts the image when one layer verifies with the key AND names this image's
//! digest, so a signature copied from another image is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::image::MEDIA_MANIFEST;
use crate::keys::{PrivateKey, PublicKey};
use crate::{Blob, Client, Error, Reference, Result};

pub const MEDIA_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const MEDIA_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// `sha256-<hex>.<suffix>`: where cosign keeps an image's signatures (`sig`) and
/// attestations (`att`).
pub fn cosign_tag(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replace(':', "-"))
}

/// The simple-signing payload cosign signs for `repository` at `digest`.
pub fn simple_signing_payload(repository: &str, digest: &str) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    serde_json::to_vec(&v).expect("json")
}

/// DSSE's pre-authentication encoding: what an envelope's signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

/// The image `reference` names, resolved to its manifest digest.
pub fn resolve(client: &Client, reference: &Reference) -> Result<String> {
    Ok(client.get_manifest(reference.manifest_ref())?.digest)
}

/// The layers (blob, annotations) of the manifest at `tag`, if the tag exists.
fn existing_layers(client: &Client, tag: &str) -> Result<Vec<(Blob, Value)>> {
    let m = match client.get_manifest(tag) {
        Ok(m) => m,
        Err(Error::ManifestUnknown { .. } | Error::NotFound { .. }) => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_slice(&m.bytes)
        .map_err(|e| Error::Invalid(format!("{tag} is not a JSON manifest: {e}")))?;
    let mut out = vec![];
    for l in v["layers"].as_array().into_iter().flatten() {
        let digest = l["digest"].as_str().unwrap_or_default();
        let bytes = client.get_blob(digest)?;
        let media = l["mediaType"].as_str().unwrap_or_default();
        out.push((Blob::new(media, bytes), l["annotations"].clone()));
    }
    Ok(out)
}

/// Writes the manifest of `layers` (with their annotations) under `tag`, as cosign
/// lays out its signature images.
fn put_layers(client: &Client, tag: &str, layers: &[(Blob, Value)]) -> Result<String> {
    let config = json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": layers.iter().map(|_| json!({"created": "0001-01-01T00:00:00Z"})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(b, _)| b.digest.clone()).collect::<Vec<_>>()},
        "config": {},
    });
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).expect("json"),
    );
    let descs: Vec<Value> = layers
        .iter()
        .map(|(b, ann)| {
            let mut d = b.descriptor();
            d["annotations"] = ann.clone();
            d
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": descs,
    });
    let manifest = Blob::new(MEDIA_MANIFEST, serde_json::to_vec(&manifest).expect("json"));
    for blob in layers.iter().map(|(b, _)| b).chain([&config]) {
        if !client.has_blob(&blob.digest)? {
            client.upload_blob(blob, "signature")?;
        }
    }
    client.put_manifest(&manifest, tag)?;
    Ok(manifest.digest)
}

/// Signs the image `reference` names: its digest, in the `.sig` tag.
pub fn sign(client: &Client, reference: &Reference, key: &PrivateKey) -> Result<(String, String)> {
    let digest = resolve(client, reference)?;
    let payload = simple_signing_payload(&reference.name(), &digest);
    let sig = key.sign(&payload);
    let tag = cosign_tag(&digest, "sig");
    let mut layers = existing_layers(client, &tag)?;
    layers.push((
        Blob::new(MEDIA_SIMPLESIGNING, payload),
        json!({ ANNOTATION_SIGNATURE: sig }),
    ));
    put_layers(client, &tag, &layers)?;
    Ok((digest, tag))
}

/// Attests the image: an in-toto statement with `predicate` (of `predicate_type`)
/// about its digest, in a DSSE envelope in the `.att` tag.
pub fn attest(
    client: &Client,
    reference: &Reference,
    key: &PrivateKey,
    predicate_type: &str,
    predicate: Value,
) -> Result<(String, String)> {
    let digest = resolve(client, reference)?;
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": reference.name(), "digest": {"sha256": &digest[7..]}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let payload = serde_json::to_vec(&statement).expect("json");
    let sig = key.sign(&pae(IN_TOTO, &payload));
    let envelope = json!({
        "payloadType": IN_TOTO,
        "payload": B64.encode(&payload),
        "signatures": [{"keyid": "", "sig": sig}],
    });
    let tag = cosign_tag(&digest, "att");
    let mut layers = existing_layers(client, &tag)?;
    layers.push((
        Blob::new(MEDIA_DSSE, serde_json::to_vec(&envelope).expect("json")),
        json!({ ANNOTATION_SIGNATURE: "", "predicateType": predicate_type }),
    ));
    put_layers(client, &tag, &layers)?;
    Ok((digest, tag))
}

/// What verification found: the image's digest, and the statements attested.
#[derive(Debug, Clone)]
pub struct Verified {
    pub digest: String,
    pub signatures: usize,
    pub attestations: Vec<Value>,
}

/// Checks the image `reference` names has a signature by `key` for its digest (and,
/// with `attestation`, a provenance attestation by `key` about it). Any failure is
/// [`Error::Unverified`] with the reason.
pub fn verify(
    client: &Client,
    reference: &Reference,
    key: &PublicKey,
    attestation: bool,
) -> Result<Verified> {
    let digest = resolve(client, reference)?;
    let unverified = |reason: String| Error::Unverified {
        reference: reference.to_string(),
        reason,
    };
    let layers = existing_layers(client, &cosign_tag(&digest, "sig"))?;
    if layers.is_empty() {
        return Err(unverified(format!("no signature for {digest}")));
    }
    let mut good = 0;
    let mut other_digest = None;
    for (blob, ann) in &layers {
        let Some(sig) = ann[ANNOTATION_SIGNATURE].as_str() else {
            continue;
        };
        if !key.verify(&blob.bytes, sig) {
            continue;
        }
        let payload: Value = serde_json::from_slice(&blob.bytes).unwrap_or(Value::Null);
        let signed = payload["critical"]["image"]["docker-manifest-digest"]
            .as_str()
            .unwrap_or_default();
        if signed == digest {
            good += 1;
        } else {
            other_digest = Some(signed.to_string());
        }
    }
    if good == 0 {
        return Err(unverified(match other_digest {
            Some(d) => format!("the signature is for another image ({d}), not {digest}"),
            None => format!(
                "none of the {} signature(s) of {digest} verifies with the key",
                layers.len()
            ),
        }));
    }
    let mut attestations = vec![];
    if attestation {
        for (blob, _) in existing_layers(client, &cosign_tag(&digest, "att"))? {
            let env: Value = serde_json::from_slice(&blob.bytes).unwrap_or(Value::Null);
            let payload = env["payload"]
                .as_str()
                .and_then(|p| B64.decode(p).ok())
                .unwrap_or_default();
            let ptype = env["payloadType"].as_str().unwrap_or_default();
            let signed = env["signatures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["sig"].as_str())
                .any(|s| key.verify(&pae(ptype, &payload), s));
            let st: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            let about = st["subject"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["digest"]["sha256"].as_str() == Some(&digest[7..]));
            if signed && about && st["predicateType"] == SLSA_PROVENANCE_V1 {
                attestations.push(st);
            }
        }
        if attestations.is_empty() {
            return Err(unverified(format!(
                "no SLSA provenance attestation of {digest} verifies with the key"
            )));
        }
    }
    Ok(Verified {
        digest,
        signatures: good,
        attestations,
    })
}

/// [`verify`] with several accepted keys (a policy's): the first key that verifies
/// wins; when none does, the reason names what each key found.
pub fn verify_any(
    client: &Client,
    reference: &Reference,
    keys: &[PublicKey],
    attestation: bool,
) -> Result<Verified> {
    let mut reasons = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match verify(client, reference, key, attestation) {
            Ok(v) => return Ok(v),
            Err(Error::Unverified { reason, .. }) if keys.len() > 1 => {
                reasons.push(format!("key {}: {reason}", i + 1));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Unverified {
        reference: reference.to_string(),
        reason: if reasons.is_empty() {
            "no key to verify with".into()
        } else {
            reasons.join("; ")
        },
    })
}
