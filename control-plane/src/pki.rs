//! The cluster's PKI: a CA, the API server's serving certificate and the
//! admin client certificate, generated on first start and reused afterwards,
//! plus the kubeconfig the stock kubectl uses as is.
//!
//! Files live under `<data dir>/pki/`; private keys are written mode 0600.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// PKI failures.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a PKI file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("certificate error ({what}): {source}")]
    Cert {
        /// Which certificate.
        what: &'static str,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
}

/// A certificate with its private key, both PEM.
#[derive(Clone, Debug)]
pub struct CertPair {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
}

/// The cluster PKI loaded from (or created in) a directory.
#[derive(Clone, Debug)]
pub struct Pki {
    /// Where the files live.
    pub dir: PathBuf,
    /// The cluster CA.
    pub ca: CertPair,
    /// The API server's serving certificate.
    pub apiserver: CertPair,
    /// The `kubernetes-admin` client certificate (group `system:masters`).
    pub admin: CertPair,
}

/// Names every serving certificate of the API server carries.
const APISERVER_DNS_NAMES: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Cert { what, source }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

impl Pki {
    /// Loads the PKI from `dir`, generating whatever is missing. The serving
    /// certificate is regenerated when it lacks one of `extra_ips`/`extra_names`.
    pub fn load_or_create(
        dir: &Path,
        extra_ips: &[IpAddr],
        extra_names: &[String],
    ) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let ca = Self::load_or_create_ca(dir)?;
        let issuer = issuer_for(&ca)?;

        let mut ips: Vec<IpAddr> = vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            IpAddr::from([10, 96, 0, 1]),
        ];
        for ip in extra_ips {
            if !ips.contains(ip) && !ip.is_unspecified() {
                ips.push(*ip);
            }
        }
        let mut names: Vec<String> = APISERVER_DNS_NAMES.iter().map(|s| s.to_string()).collect();
        if let Ok(host) = hostname() {
            names.push(host);
        }
        names.extend(extra_names.iter().cloned());
        let want_sans = format!("{ips:?} {names:?}");
        let sans_path = dir.join("apiserver.sans");
        let apiserver = match (
            read(&dir.join("apiserver.crt")),
            read(&dir.join("apiserver.key")),
            read(&sans_path),
        ) {
            (Ok(cert_pem), Ok(key_pem), Ok(sans)) if sans == want_sans => {
                CertPair { cert_pem, key_pem }
            }
            _ => {
                let pair = issue_leaf(
                    &issuer,
                    "kube-apiserver",
                    None,
                    &ips,
                    &names,
                    ExtendedKeyUsagePurpose::ServerAuth,
                )?;
                write(&dir.join("apiserver.key"), &pair.key_pem, true)?;
                write(&dir.join("apiserver.crt"), &pair.cert_pem, false)?;
                write(&sans_path, &want_sans, false)?;
                pair
            }
        };
        let admin = match (read(&dir.join("admin.crt")), read(&dir.join("admin.key"))) {
            (Ok(cert_pem), Ok(key_pem)) => CertPair { cert_pem, key_pem },
            _ => {
                let pair = issue_client(&issuer, "kubernetes-admin", Some("system:masters"))?;
                write(&dir.join("admin.key"), &pair.key_pem, true)?;
                write(&dir.join("admin.crt"), &pair.cert_pem, false)?;
                pair
            }
        };
        Ok(Pki {
            dir: dir.to_owned(),
            ca,
            apiserver,
            admin,
        })
    }

    fn load_or_create_ca(dir: &Path) -> Result<CertPair, PkiError> {
        if let (Ok(cert_pem), Ok(key_pem)) = (read(&dir.join("ca.crt")), read(&dir.join("ca.key")))
        {
            return Ok(CertPair { cert_pem, key_pem });
        }
        let key = KeyPair::generate().map_err(cert_err("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("skiff-ca", None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.self_signed(&key).map_err(cert_err("CA"))?;
        let pair = CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write(&dir.join("ca.key"), &pair.key_pem, true)?;
        write(&dir.join("ca.crt"), &pair.cert_pem, false)?;
        Ok(pair)
    }

    /// Issues a client certificate signed by the cluster CA (e.g. for a node:
    /// `system:node:<name>` in group `system:nodes`).
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<CertPair, PkiError> {
        issue_client(&issuer_for(&self.ca)?, common_name, organization)
    }

    /// Issues a serving certificate signed by the cluster CA.
    pub fn issue_serving_cert(
        &self,
        common_name: &str,
        ips: &[IpAddr],
        names: &[String],
    ) -> Result<CertPair, PkiError> {
        issue_leaf(
            &issuer_for(&self.ca)?,
            common_name,
            None,
            ips,
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }
}

fn issuer_for(ca: &CertPair) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(cert_err("CA key"))?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(cert_err("CA"))
}

fn issue_client(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    organization: Option<&str>,
) -> Result<CertPair, PkiError> {
    issue_leaf(
        issuer,
        common_name,
        organization,
        &[],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )
}

fn issue_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    organization: Option<&str>,
    ips: &[IpAddr],
    names: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertPair, PkiError> {
    let key = KeyPair::generate().map_err(cert_err("leaf key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name, organization);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for name in names {
        let dns = name
            .clone()
            .try_into()
            .map_err(cert_err("subject alternative name"))?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_err("leaf certificate"))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn hostname() -> std::io::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(std::io::Error::other("empty hostname"));
    }
    Ok(name)
}

/// Renders a kubeconfig that uses a client certificate, embedding everything.
pub fn kubeconfig(
    server: &str,
    ca_pem: &str,
    client: &CertPair,
    cluster: &str,
    user: &str,
) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n    namespace: default\ncurrent-context: {cluster}\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    )
}

/// Writes `contents` to `path` atomically with mode 0600.
pub fn write_private_file(path: &Path, contents: &str) -> Result<(), PkiError> {
    write(path, contents, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_is_created_once_and_reused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = Pki::load_or_create(dir.path(), &[], &[])?;
        let second = Pki::load_or_create(dir.path(), &[], &[])?;
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        assert_eq!(first.apiserver.cert_pem, second.apiserver.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        // A new SAN re-issues the serving certificate but keeps the CA.
        let third = Pki::load_or_create(dir.path(), &[IpAddr::from([127, 0, 0, 2])], &[])?;
        assert_eq!(first.ca.cert_pem, third.ca.cert_pem);
        assert_ne!(first.apiserver.cert_pem, third.apiserver.cert_pem);
        let mode = std::fs::metadata(dir.path().join("ca.key"))?.permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        Ok(())
    }

    #[test]
    fn client_certificates_carry_name_and_group() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &[], &[])?;
        let der = rustls_pemfile::certs(&mut pki.admin.cert_pem.as_bytes())
            .next()
            .ok_or_else(|| anyhow::anyhow!("no certificate"))??;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
        let subject = cert.subject().to_string();
        assert!(subject.contains("CN=kubernetes-admin"), "{subject}");
        assert!(subject.contains("O=system:masters"), "{subject}");
        Ok(())
    }
}
