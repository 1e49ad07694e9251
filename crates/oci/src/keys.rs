//! cosign's key formats.
//!
//! - `cosign.pub`: a PEM `PUBLIC KEY` (PKIX), ECDSA P-256.
//! - `cosign.key`: a PEM `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign ≥ 2.1; `ENCRYPTED
//!   COSIGN PRIVATE KEY` before, read too) whose body is go-securesystemslib's
//!   `encrypted` JSON: `{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"},
//!   "cipher": {"name": "nacl/secretbox", "nonce"}, "ciphertext"}` (byte fields in
//!   standard base64), the key derived by scrypt from the password (`COSIGN_PASSWORD`),
//!   the plaintext the PKCS#8 DER of the private key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand_core::{OsRng, RngCore};

use crate::{Error, Result};

const PEM_KEY: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const PEM_KEY_OLD: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// A signing key (ECDSA P-256, SHA-256), as cosign uses.
pub struct PrivateKey(SigningKey);

/// A verifying key read from `cosign.pub`.
#[derive(Debug, Clone)]
pub struct PublicKey(VerifyingKey);

impl PrivateKey {
    pub fn generate() -> PrivateKey {
        PrivateKey(SigningKey::random(&mut OsRng))
    }

    /// `cosign.key`'s contents, encrypted with `password`.
    pub fn to_cosign_pem(&self, password: &[u8]) -> Result<String> {
        let der = self
            .0
            .to_pkcs8_der()
            .map_err(|e| Error::Invalid(format!("cannot encode the key: {e}")))?;
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let (n_log2, r, p) = (15u8, 8u32, 1u32);
        let key = derive(password, &salt, n_log2, r, p)?;
        let ciphertext = XSalsa20Poly1305::new(&key.into())
            .encrypt(Nonce::from_slice(&nonce), der.as_bytes())
            .map_err(|_| Error::Invalid("cannot encrypt the key".into()))?;
        let body = serde_json::json!({
            "kdf": {
                "name": "scrypt",
                "params": {"N": 1u64 << n_log2, "r": r, "p": p},
                "salt": B64.encode(salt),
            },
            "cipher": {"name": "nacl/secretbox", "nonce": B64.encode(nonce)},
            "ciphertext": B64.encode(ciphertext),
        });
        Ok(pem_encode(
            PEM_KEY,
            &serde_json::to_vec(&body).expect("json"),
        ))
    }

    /// Reads `cosign.key` (hoist's or cosign's), decrypting it with `password`.
    pub fn from_cosign_pem(text: &str, password: &[u8]) -> Result<PrivateKey> {
        let (label, body) = pem_decode(text)?;
        if label != PEM_KEY && label != PEM_KEY_OLD {
            return Err(Error::Invalid(format!(
                "not a cosign private key (PEM type {label}, want {PEM_KEY})"
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::Invalid(format!("the key's body is not cosign's JSON: {e}")))?;
        let b64 = |p: &serde_json::Value, what: &str| {
            p.as_str()
                .and_then(|s| B64.decode(s).ok())
                .ok_or_else(|| Error::Invalid(format!("the key has no valid {what}")))
        };
        if v["kdf"]["name"] != "scrypt" || v["cipher"]["name"] != "nacl/secretbox" {
            return Err(Error::Invalid(
                "the key is not scrypt + nacl/secretbox".into(),
            ));
        }
        let n = v["kdf"]["params"]["N"].as_u64().unwrap_or(0);
        if !n.is_power_of_two() || n < 2 {
            return Err(Error::Invalid(
                "the key's scrypt N is not a power of two".into(),
            ));
        }
        let r = v["kdf"]["params"]["r"].as_u64().unwrap_or(8) as u32;
        let p = v["kdf"]["params"]["p"].as_u64().unwrap_or(1) as u32;
        let salt = b64(&v["kdf"]["salt"], "salt")?;
        let nonce = b64(&v["cipher"]["nonce"], "nonce")?;
        if nonce.len() != 24 {
            return Err(Error::Invalid("the key's nonce is not 24 bytes".into()));
        }
        let ciphertext = b64(&v["ciphertext"], "ciphertext")?;
        let key = derive(password, &salt, n.trailing_zeros() as u8, r, p)?;
        let der = XSalsa20Poly1305::new(&key.into())
            .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| {
                Error::Invalid("cannot decrypt the key: wrong password (COSIGN_PASSWORD)".into())
            })?;
        let key = SigningKey::from_pkcs8_der(&der)
            .map_err(|e| Error::Invalid(format!("the key is not an ECDSA P-256 key: {e}")))?;
        Ok(PrivateKey(key))
    }

    /// `cosign.pub`'s contents.
    pub fn public(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// The ASN.1 DER ECDSA signature of SHA-256(`message`), base64: what cosign
    /// stores in `dev.cosignproject.cosign/signature`.
    pub fn sign(&self, message: &[u8]) -> String {
        let sig: DerSignature = self.0.sign(message);
        B64.encode(sig.as_bytes())
    }
}

impl PublicKey {
    pub fn from_pem(text: &str) -> Result<PublicKey> {
        VerifyingKey::from_public_key_pem(text.trim())
            .map(PublicKey)
            .map_err(|e| Error::Invalid(format!("not an ECDSA P-256 public key (PEM): {e}")))
    }

    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
    }

    /// Whether `sig_b64` (DER or raw r||s, base64) signs `message`.
    pub fn verify(&self, message: &[u8], sig_b64: &str) -> bool {
        let Ok(raw) = B64.decode(sig_b64.trim()) else {
            return false;
        };
        let sig = Signature::from_der(&raw).or_else(|_| Signature::from_slice(&raw));
        sig.is_ok_and(|s| self.0.verify(message, &s).is_ok())
    }
}

fn derive(password: &[u8], salt: &[u8], n_log2: u8, r: u32, p: u32) -> Result<[u8; 32]> {
    let params = scrypt::Params::new(n_log2, r, p, 32)
        .map_err(|e| Error::Invalid(format!("bad scrypt parameters: {e}")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|e| Error::Invalid(format!("scrypt: {e}")))?;
    Ok(key)
}

fn pem_encode(label: &str, body: &[u8]) -> String {
    let b = B64.encode(body);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn pem_decode(text: &str) -> Result<(String, Vec<u8>)> {
    let bad = || Error::Invalid("not a PEM file".into());
    let start = text.find("-----BEGIN ").ok_or_else(bad)?;
    let rest = &text[start + 11..];
    let end_label = rest.find("-----").ok_or_else(bad)?;
    let label = rest[..end_label].to_string();
    let body_start = end_label + 5;
    let end = rest
        .find(&format!("-----END {label}-----"))
        .ok_or_else(bad)?;
    let b64: String = rest[body_start..end].split_whitespace().collect();
    let body = B64.decode(b64).map_err(|_| bad())?;
    Ok((label, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_cosigns_format_and_signs() {
        let k = PrivateKey::generate();
        let pem = k.to_cosign_pem(b"pw").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = PrivateKey::from_cosign_pem(&pem, b"pw").unwrap();
        let sig = back.sign(b"payload");
        let public = PublicKey::from_pem(&k.public().to_pem()).unwrap();
        assert!(public.verify(b"payload", &sig));
        assert!(!public.verify(b"payloaD", &sig));
        let e = PrivateKey::from_cosign_pem(&pem, b"wrong").err().unwrap();
        assert!(e.to_string().contains("wrong password"), "{e}");
    }
}
