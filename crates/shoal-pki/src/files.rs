//! Reading and writing the PEM files that hold certificates and private keys.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::PkiError;

/// Largest PEM file read. A certificate chain or key is a few KiB, so a file this large
/// means a flag points at the wrong file; refusing it beats reading it into memory.
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// Certificates are public; anyone on the node may read them.
pub(crate) const CERT_FILE_MODE: u32 = 0o644;
/// Private keys are readable by their owner only.
pub(crate) const KEY_FILE_MODE: u32 = 0o600;

/// Reads a PEM file as text, refusing files over [`PEM_FILE_BYTES_MAX`].
pub(crate) fn read_pem_text(path: &Path) -> Result<String, PkiError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut text = String::new();
    // Reading one byte past the limit tells a file at the limit from one beyond it.
    file.take(PEM_FILE_BYTES_MAX + 1).read_to_string(&mut text).map_err(io_error(path))?;
    if text.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(PkiError::FileTooLarge { path: path.to_owned(), limit_bytes: PEM_FILE_BYTES_MAX });
    }
    Ok(text)
}

/// Every certificate in a PEM file, in file order; at least one.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let text = read_pem_text(path)?;
    parse_certificates(&text, path)
}

/// Every certificate in PEM `text` read from `path`; at least one.
pub(crate) fn parse_certificates(text: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PkiError::Pem { path: path.to_owned(), source })?;
    if certificates.is_empty() {
        return Err(PkiError::NoCertificate { path: path.to_owned() });
    }
    Ok(certificates)
}

/// The first private key in a PEM file.
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let text = read_pem_text(path)?;
    parse_private_key(&text, path)
}

/// The first private key in PEM `text` read from `path`.
pub(crate) fn parse_private_key(text: &str, path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|source| PkiError::Pem { path: path.to_owned(), source })
}

/// Encodes DER bytes as one PEM block with Unix line endings.
pub(crate) fn encode_pem(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// Writes `contents` to `path` with permission bits `mode`, creating `path`'s directory.
///
/// The data goes to a sibling temporary file that is synced and then renamed over `path`:
/// a crash leaves either the old file or the new one, never half a key, and a file that
/// already existed with looser permissions is replaced rather than reused.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let mut file = open_new(&temporary, mode).map_err(io_error(&temporary))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io_error(&temporary))?;
    fs::rename(&temporary, path).map_err(io_error(path))
}

/// Maps an I/O failure on `path` to [`PkiError::Io`].
fn io_error(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_owned(), source }
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // A leftover temporary file from a crash may have other permissions; start afresh so
    // the mode below applies.
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> io::Result<File> {
    // Permission bits are a Unix notion; elsewhere the directory's ACLs decide.
    OpenOptions::new().write(true).create(true).truncate(true).open(path)
}
