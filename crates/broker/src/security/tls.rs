//! TLS for SSL and SASL_SSL listeners: rustls with the ring provider, keys and certificates in
//! PEM, optional client certificates checked against a PEM CA bundle.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::BrokerConfig;

/// Builds the TLS server configuration from the `ssl.*` properties.
///
/// The server certificate chain and key come from `ssl.keystore.location` (one PEM file holding
/// the chain and an unencrypted PKCS#8, PKCS#1 or SEC1 key) or from the inline PEM values
/// `ssl.keystore.certificate.chain` and `ssl.keystore.key`. Client certificates are verified
/// against `ssl.truststore.location` / `ssl.truststore.certificates` as `ssl.client.auth` says.
pub fn server_config(config: &BrokerConfig) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = keystore(config)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let client_auth = config.get("ssl.client.auth").to_ascii_lowercase();
    let builder = if client_auth == "none" || client_auth.is_empty() {
        builder.with_no_client_auth()
    } else {
        let roots = truststore(config)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let verifier = if client_auth == "requested" {
            verifier.allow_unauthenticated()
        } else {
            verifier
        };
        builder.with_client_cert_verifier(
            verifier
                .build()
                .map_err(|e| format!("ssl.truststore: {e}"))?,
        )
    };
    let certified = certified_key(&provider, chain, key)?;
    let location = config.get("ssl.keystore.location").trim().to_string();
    let resolver = ReloadingCert {
        modified: Mutex::new((modified_time(&location), Instant::now())),
        current: Mutex::new(Arc::new(certified)),
        location,
        provider,
    };
    let mut server = builder.with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols.clear();
    Ok(Arc::new(server))
}

fn certified_key(
    provider: &rustls::crypto::CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("ssl.keystore: unusable private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("ssl.keystore: the key does not match the certificate: {e}"))?;
    Ok(certified)
}

fn modified_time(path: &str) -> Option<SystemTime> {
    if path.is_empty() {
        return None;
    }
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The server certificate, read again from `ssl.keystore.location` when the file changes
/// (checked at most once a second, at a handshake), so certificates rotate without a restart.
/// A file that does not load keeps the previous certificate in use.
#[derive(Debug)]
struct ReloadingCert {
    location: String,
    /// (modification time of the loaded file, last check)
    modified: Mutex<(Option<SystemTime>, Instant)>,
    current: Mutex<Arc<CertifiedKey>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ReloadingCert {
    fn reload_if_changed(&self) {
        if self.location.is_empty() {
            return;
        }
        let mut modified = self.modified.lock().unwrap_or_else(|e| e.into_inner());
        if modified.1.elapsed() < Duration::from_secs(1) {
            return;
        }
        modified.1 = Instant::now();
        let now = modified_time(&self.location);
        if now == modified.0 {
            return;
        }
        let loaded = std::fs::read(&self.location)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string())?;
                certified_key(&self.provider, chain, key)
            });
        match loaded {
            Ok(key) => {
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                modified.0 = now;
                tracing::info!(file = %self.location, "server certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(file = %self.location, error = %e, "server certificate not reloaded; keeping the previous one")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.reload_if_changed();
        Some(
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn keystore(
    config: &BrokerConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let location = config.get("ssl.keystore.location").trim();
    let (chain_pem, key_pem) = if !location.is_empty() {
        let pem = std::fs::read(location)
            .map_err(|e| format!("ssl.keystore.location {location}: {e}"))?;
        (pem.clone(), pem)
    } else {
        (
            config
                .get("ssl.keystore.certificate.chain")
                .as_bytes()
                .to_vec(),
            config.get("ssl.keystore.key").as_bytes().to_vec(),
        )
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ssl.keystore: bad certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("a TLS listener needs ssl.keystore.location (PEM certificate chain and key) or ssl.keystore.certificate.chain and ssl.keystore.key".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("ssl.keystore: no usable private key in PEM: {e}"))?;
    Ok((chain, key))
}

fn truststore(config: &BrokerConfig) -> Result<rustls::RootCertStore, String> {
    let location = config.get("ssl.truststore.location").trim();
    let pem = if !location.is_empty() {
        std::fs::read(location).map_err(|e| format!("ssl.truststore.location {location}: {e}"))?
    } else {
        config
            .get("ssl.truststore.certificates")
            .as_bytes()
            .to_vec()
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("ssl.truststore: bad certificate PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("ssl.truststore: {e}"))?;
    }
    if roots.is_empty() {
        return Err("ssl.client.auth needs CA certificates in ssl.truststore.location or ssl.truststore.certificates".into());
    }
    Ok(roots)
}

/// The principal of a TLS client: `User:` and the subject of its certificate as an RFC 2253
/// distinguished name (`User:CN=alice,OU=eng,O=example`) as the mapping rules turn it, or
/// `User:ANONYMOUS` without one.
pub fn principal(
    certs: Option<&[CertificateDer<'_>]>,
    rules: &super::principal::PrincipalMapper,
) -> String {
    match certs
        .and_then(|c| c.first())
        .and_then(|c| subject_dn(c.as_ref()))
    {
        Some(dn) => format!("User:{}", rules.map(&dn)),
        None => super::ANONYMOUS.to_string(),
    }
}

/// One DER element: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = len << 8 | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject of an X.509 certificate in RFC 2253 form (last RDN first).
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    let (_, cert, _) = tlv(cert)?;
    let (_, mut tbs, _) = tlv(cert)?;
    let mut fields = Vec::new();
    while !tbs.is_empty() && fields.len() < 6 {
        let (tag, content, rest) = tlv(tbs)?;
        if tag != 0xa0 {
            fields.push(content);
        }
        tbs = rest;
    }
    // serial, signature algorithm, issuer, validity, subject
    let mut name = *fields.get(4)?;
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (_, mut set, rest) = tlv(name)?;
        name = rest;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (_, atv, rest) = tlv(set)?;
            set = rest;
            let (_, oid, value) = tlv(atv)?;
            let (vtag, vcontent, _) = tlv(value)?;
            let oid = oid_string(oid);
            let text = match vtag {
                0x0c | 0x13 | 0x16 | 0x14 => Some(String::from_utf8_lossy(vcontent).into_owned()),
                0x1e => {
                    let units: Vec<u16> = vcontent
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    Some(String::from_utf16_lossy(&units))
                }
                _ => None,
            };
            let part = match (short_name(&oid), text) {
                (Some(short), Some(text)) => format!("{short}={}", escape(&text)),
                _ => {
                    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{oid}=#{hex}")
                }
            };
            parts.push(part);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn oid_string(oid: &[u8]) -> String {
    let mut out = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        value = value << 7 | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if out.is_empty() && i < oid.len() {
                let first = (value / 40).min(2);
                out.push(first);
                out.push(value - first * 40);
            } else {
                out.push(value);
            }
            value = 0;
        }
    }
    out.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc");
        dn.push(rcgen::DnType::OrganizationalUnitName, "eng");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_dn(cert.der()).unwrap(),
            "CN=alice,OU=eng,O=Example\\, Inc,C=DE"
        );
        let default = crate::security::principal::PrincipalMapper::parse("DEFAULT").unwrap();
        assert_eq!(
            principal(Some(&[cert.der().clone()]), &default),
            "User:CN=alice,OU=eng,O=Example\\, Inc,C=DE"
        );
        let cn =
            crate::security::principal::PrincipalMapper::parse("RULE:^CN=([^,]*),.*$/$1/").unwrap();
        assert_eq!(principal(Some(&[cert.der().clone()]), &cn), "User:alice");
        assert_eq!(principal(None, &default), "User:ANONYMOUS");
        assert!(subject_dn(&[0x30, 0x05, 1]).is_none());
    }
}
