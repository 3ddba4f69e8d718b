//! A private certificate authority for TLS tests: CA, server and client certificates as PEM.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

/// A certificate and its private key, PEM-encoded.
pub struct CertPem {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl CertPem {
    /// Writes the certificate and key to `cert` and `key` (the key 0600, as libpq demands).
    pub fn write(&self, cert: &std::path::Path, key: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(cert, &self.cert).expect("write certificate");
        std::fs::write(key, &self.key).expect("write key");
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    }
}

/// A private CA that signs the certificates of a test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA certificate (what a peer trusts).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> CertPem {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        CertPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A client certificate whose subject is `CN=cn` (and `O=org` when given).
    pub fn client(&self, cn: &str, org: Option<&str>) -> CertPem {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        CertPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}
