//! TLS on the listener and optional mTLS for agents: with `require_host_certificates`
//! a host token works only with a client certificate for that host; people and
//! callbacks need none.

mod util;

use std::net::SocketAddr;

use dbward_approval_api::{ApproverClient, RequestStatus};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use util::*;

struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "dbward test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).expect("ca");
        Self {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, ca_key),
        }
    }

    /// (certificate PEM, key PEM) for `name` with the given extended key usage.
    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

fn client(
    pki: &Pki,
    addr: SocketAddr,
    token: &str,
    identity: Option<&(String, String)>,
) -> ApproverClient {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .resolve("localhost", addr);
    if let Some((cert, key)) = identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
        );
    }
    let http = builder.build().expect("client");
    ApproverClient::with_http(&format!("https://localhost:{}", addr.port()), token, http)
        .expect("approver client")
}

fn code(err: dbward_approval_api::ClientError) -> (u16, String) {
    match err {
        dbward_approval_api::ClientError::Status { status, code, .. } => (status.as_u16(), code),
        other => panic!("expected a status, got {other}"),
    }
}

#[tokio::test]
async fn host_tokens_need_the_hosts_own_client_certificate_people_need_none() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server_cert, server_key) = pki.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    for (name, text) in [
        ("server.crt", &server_cert),
        ("server.key", &server_key),
        ("ca.crt", &pki.ca_pem),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write pem");
    }
    let extra = format!(
        "\n[tls]\ncert_path = \"{0}/server.crt\"\nkey_path = \"{0}/server.key\"\nclient_ca_path = \"{0}/ca.crt\"\nrequire_host_certificates = true\n",
        dir.path().display()
    );
    let h = start(&extra).await;
    assert!(h.url().starts_with("https://"));
    let addr = h.running.addr;
    let db1 = pki.leaf("db1", ExtendedKeyUsagePurpose::ClientAuth);
    let db2 = pki.leaf("db2", ExtendedKeyUsagePurpose::ClientAuth);

    let req = request("DELETE FROM orders", 1, 60);
    let filed = client(&pki, addr, DB1_TOKEN, Some(&db1))
        .file_request(&req)
        .await
        .expect("db1 with its certificate");
    assert_eq!(filed.status, RequestStatus::Pending);

    let err = client(&pki, addr, DB1_TOKEN, None)
        .file_request(&request("SELECT 1", 1, 60))
        .await
        .expect_err("no cert");
    assert_eq!(code(err), (401, "client_certificate_required".to_string()));
    let err = client(&pki, addr, DB1_TOKEN, Some(&db2))
        .file_request(&request("SELECT 2", 1, 60))
        .await
        .expect_err("db2's cert");
    assert_eq!(code(err), (403, "client_certificate_mismatch".to_string()));

    let people = client(&pki, addr, &token("alice"), None);
    assert_eq!(
        people
            .list(None, None)
            .await
            .expect("approver without a certificate")
            .len(),
        1
    );
    let rogue = Pki::new();
    let foreign = rogue.leaf("db1", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        client(&pki, addr, DB1_TOKEN, Some(&foreign))
            .list(None, None)
            .await
            .is_err(),
        "a certificate from another CA fails the handshake"
    );
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(
        plain.is_err() || !plain.expect("resp").status().is_success(),
        "plain HTTP is not served"
    );
    assert!(audited(&h, "client_certificate_required", 401).await);
    assert!(audited(&h, "client_certificate_mismatch", 403).await);
}
