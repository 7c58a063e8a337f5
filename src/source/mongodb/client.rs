//! Making a MongoDB client from the source's settings: the URI, then the
//! `tls` files. Shared by the source, its token store and leader election.
//!
//! The driver takes a client certificate only as one file holding the
//! certificate and its key (`tlsCertificateKeyFile`), read once when the
//! client is made (`Client::with_options` builds the TLS configuration
//! eagerly). Kubernetes mounts them as two files, so the joined PEM is
//! written to a private file (mode 0600, a fresh random name, created
//! exclusively) in the temporary directory (`$TMPDIR`, else `/tmp`) just
//! for the client's creation, and removed right after.

use mongodb::Client;
use mongodb::options::{ClientOptions, Tls, TlsOptions};

use super::config::MongoTlsSpec;

/// A client for `uri` with `tls` applied, named `app_name` in the
/// server's logs (unless the URI names it). Connects lazily.
pub async fn connect(
    uri: &str,
    tls: Option<&MongoTlsSpec>,
    app_name: &str,
) -> mongodb::error::Result<Client> {
    let mut options = ClientOptions::parse(uri).await?;
    options.app_name.get_or_insert_with(|| app_name.to_owned());
    let Some(tls) = tls else {
        return Client::with_options(options);
    };
    // URI options such as tlsAllowInvalidHostnames stay; the files replace
    // the URI's.
    let mut tls_options = match options.tls.take() {
        Some(Tls::Enabled(o)) => o,
        Some(Tls::Disabled) | None => TlsOptions::default(),
    };
    if let Some(ca) = &tls.ca_file {
        tls_options.ca_file_path = Some(ca.clone());
    }
    let Some(identity) = &tls.identity else {
        options.tls = Some(Tls::Enabled(tls_options));
        return Client::with_options(options);
    };
    let file = private_file(&identity.pem).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot write the client certificate ({}) and its key to a private file in {}: {e}",
                identity.cert_file.display(),
                std::env::temp_dir().display()
            ),
        )
    })?;
    tls_options.cert_key_file_path = Some(file.path().to_owned());
    options.tls = Some(Tls::Enabled(tls_options));
    let client = Client::with_options(options);
    // The driver has read it: remove it now (dropping it would too, but
    // an error here is worth a word).
    if let Err(e) = file.close() {
        tracing::warn!(error = %e, "cannot remove the temporary client certificate file");
    }
    client
}

/// `pem` in a new file only this user can read.
fn private_file(pem: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    // tempfile creates it with O_EXCL and mode 0600 on Unix.
    let mut file = tempfile::Builder::new()
        .prefix("switchyard-mongodb-client-")
        .suffix(".pem")
        .tempfile()?;
    file.write_all(pem)?;
    file.flush()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_joined_pem_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let file = private_file(b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let path = file.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        file.close().unwrap();
        assert!(!path.exists());
    }
}
