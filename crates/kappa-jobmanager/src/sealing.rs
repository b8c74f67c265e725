//! The jobmanagers' secret key (`--secret-key-file`, shared by the jobmanagers of an HA
//! cluster) and the sealing of a job's literal secrets with it, so a job record keeps them
//! without holding them in clear: ChaCha20-Poly1305 (ring), the job id and the redacted job
//! file as associated data — a record whose file was changed, or secrets moved to another
//! job, does not open.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kappa_job::secret::{Literal, RestoreError};
use kappa_proto::v1::{SealedSecrets, SecretValue, SecretValues};
use prost::Message as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The format of [`SealedSecrets`] written here.
const VERSION: u32 = 1;
/// Bytes of a key.
const KEY_LEN: usize = 32;

/// The key literal secrets are sealed with.
pub struct SecretKey {
    key: LessSafeKey,
    fingerprint: Vec<u8>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", hex(&self.fingerprint))
    }
}

/// Why `--secret-key-file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("--secret-key-file `{path}` cannot be read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--secret-key-file `{path}` must hold a 32-byte key: the bytes themselves, 64 hex digits or base64 (e.g. `openssl rand -hex 32`)"
    )]
    Format { path: String },
}

/// Why a job's sealed secrets could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "its literal secrets were sealed with a --secret-key-file (key {sealed}) and this jobmanager has none: give it the same --secret-key-file"
    )]
    NoKey { sealed: String },
    #[error(
        "its literal secrets were sealed with another key ({sealed}; this jobmanager's is {ours}): give it the --secret-key-file they were sealed with"
    )]
    WrongKey { sealed: String, ours: String },
    #[error(
        "its sealed secrets do not open with this jobmanager's key: the record was altered or damaged"
    )]
    Tampered,
    #[error("its sealed secrets cannot be read (version {0})")]
    Version(u32),
    #[error("its sealed secrets cannot be read")]
    Base64(#[source] base64::DecodeError),
    #[error("its sealed secrets cannot be read")]
    Decode(#[source] prost::DecodeError),
    #[error("its sealed secrets do not fit its job file")]
    Restore(#[source] RestoreError),
    #[error(
        "its literal secrets were not kept: give the jobmanagers --secret-key-file or reference secrets with ${{env:…}}/${{file:…}} (redacted: {fields})"
    )]
    NotKept { fields: String },
    /// ring's errors say nothing more (`ring::error::Unspecified`).
    #[error("sealing the job's literal secrets failed (no random numbers from the system)")]
    Crypto,
}

impl SecretKey {
    /// Reads the key in `path`: 32 bytes, or 64 hex digits, or base64 of 32 bytes.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_bytes(&bytes).ok_or(KeyError::Format { path: shown })
    }

    /// A key from the contents of a key file; None when they hold no 32-byte key.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let key = match bytes.len() {
            KEY_LEN => bytes.to_vec(),
            _ => {
                let text = std::str::from_utf8(bytes).ok()?.trim();
                unhex(text).or_else(|| BASE64.decode(text).ok())?
            }
        };
        if key.len() != KEY_LEN {
            return None;
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).ok()?;
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"kappa-secret-key\0".as_slice(), &key].concat(),
        );
        Some(Self {
            key: LessSafeKey::new(unbound),
            fingerprint: digest.as_ref()[..8].to_vec(),
        })
    }

    /// The key's fingerprint, for messages and logs.
    pub fn fingerprint(&self) -> String {
        hex(&self.fingerprint)
    }

    /// `literals`, taken out of the redacted file `shown` of job `job`, sealed (base64).
    pub fn seal(&self, job: &str, shown: &str, literals: &[Literal]) -> Result<String, SealError> {
        let values = SecretValues {
            values: literals
                .iter()
                .map(|l| SecretValue {
                    field: l.field.clone(),
                    start: l.at.start as u64,
                    end: l.at.end as u64,
                    original: l.original.clone(),
                })
                .collect(),
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Crypto)?;
        let mut sealed = values.encode_to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated(job, shown)),
                &mut sealed,
            )
            .map_err(|_| SealError::Crypto)?;
        let message = SealedSecrets {
            version: VERSION,
            key_fingerprint: self.fingerprint.clone(),
            nonce: nonce.to_vec(),
            ciphertext: sealed,
        };
        Ok(BASE64.encode(message.encode_to_vec()))
    }

    /// The literals `sealed` (from [`seal`](Self::seal)) holds for the redacted file `shown` of
    /// job `job`.
    pub fn open(&self, job: &str, shown: &str, sealed: &str) -> Result<Vec<Literal>, SealError> {
        let message = decode(sealed)?;
        if message.key_fingerprint != self.fingerprint {
            return Err(SealError::WrongKey {
                sealed: hex(&message.key_fingerprint),
                ours: self.fingerprint(),
            });
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&message.nonce).map_err(|_| SealError::Tampered)?;
        let mut buf = message.ciphertext;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(associated(job, shown)), &mut buf)
            .map_err(|_| SealError::Tampered)?;
        let values = SecretValues::decode(&*plain).map_err(SealError::Decode)?;
        Ok(values
            .values
            .into_iter()
            .map(|v| Literal {
                field: v.field,
                at: usize::try_from(v.start).unwrap_or(usize::MAX)
                    ..usize::try_from(v.end).unwrap_or(usize::MAX),
                original: v.original,
            })
            .collect())
    }
}

/// The fingerprint of the key `sealed` was sealed with (for a jobmanager without a key).
pub fn sealed_with(sealed: &str) -> Result<String, SealError> {
    Ok(hex(&decode(sealed)?.key_fingerprint))
}

fn decode(sealed: &str) -> Result<SealedSecrets, SealError> {
    let bytes = BASE64.decode(sealed).map_err(SealError::Base64)?;
    let message = SealedSecrets::decode(bytes.as_slice()).map_err(SealError::Decode)?;
    match message.version {
        VERSION => Ok(message),
        v => Err(SealError::Version(v)),
    }
}

/// What a seal is bound to: the job and its redacted file.
fn associated(job: &str, shown: &str) -> Vec<u8> {
    [
        b"kappa-job-secrets\0".as_slice(),
        job.as_bytes(),
        b"\0",
        shown.as_bytes(),
    ]
    .concat()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 2 * KEY_LEN || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
