//! The directory's ed25519 signing key on disk: the private key file is created with mode 0600
//! and refused if anyone but its owner can read it; the public key file is what clients pin.

use crate::error::EpochError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{SigningKey, VerifyingKey};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn key_error(path: &Path, message: impl Into<String>) -> EpochError {
    EpochError::Key { path: path.display().to_string(), message: message.into() }
}

/// Generates a signing key from the OS random source and writes it (`private_path`, mode 0600,
/// never overwriting) and its public key (`public_path`), each as base64 and a newline.
pub fn generate_key_files(private_path: &Path, public_path: &Path) -> Result<VerifyingKey, EpochError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| key_error(private_path, format!("no OS randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(private_path)
        .map_err(|e| key_error(private_path, format!("cannot create: {e}")))?;
    file.write_all(format!("{}\n", B64.encode(seed)).as_bytes()).map_err(|e| key_error(private_path, e.to_string()))?;
    file.sync_all().map_err(|e| key_error(private_path, e.to_string()))?;
    let public = key.verifying_key();
    std::fs::write(public_path, format!("{}\n", B64.encode(public.as_bytes())))
        .map_err(|e| key_error(public_path, format!("cannot write: {e}")))?;
    Ok(public)
}

fn read_32(path: &Path) -> Result<[u8; 32], EpochError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, format!("cannot read: {e}")))?;
    let bytes = B64.decode(text.trim_end()).map_err(|_| key_error(path, "not base64"))?;
    bytes.try_into().map_err(|_| key_error(path, "not 32 bytes"))
}

/// Loads the signing key; refuses a file readable or writable by group or others.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, EpochError> {
    let mode = std::fs::metadata(path).map_err(|e| key_error(path, format!("cannot stat: {e}")))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(key_error(path, format!("mode is {:o}; the private key must be private: chmod 600", mode & 0o777)));
    }
    Ok(SigningKey::from_bytes(&read_32(path)?))
}

/// Loads a public key file (32 bytes, base64).
pub fn load_public_key(path: &Path) -> Result<[u8; 32], EpochError> {
    let bytes = read_32(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| key_error(path, "not a valid ed25519 public key"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("signing.key"), dir.path().join("signing.pub"));
        let generated = generate_key_files(&private, &public).unwrap();
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_signing_key(&private).unwrap().verifying_key(), generated);
        assert_eq!(load_public_key(&public).unwrap(), generated.to_bytes());
        assert!(generate_key_files(&private, &public).is_err(), "never overwrites a key");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signing_key(&private).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
