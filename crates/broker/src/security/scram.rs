//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the stored form of credentials and the
//! server side of the exchange. Only salted keys are stored; the exchange proves the client
//! knows the password without sending it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// A SCRAM mechanism with Kafka's numeric code (1 = SHA-256, 2 = SHA-512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

/// The fewest iterations a stored credential may use (as Kafka requires).
pub const MIN_ITERATIONS: i32 = 4096;
/// The most iterations a stored credential may use (as Kafka allows).
pub const MAX_ITERATIONS: i32 = 16384;

impl ScramMechanism {
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut m = <hmac::Hmac<Sha512> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramMechanism::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }

    /// (StoredKey, ServerKey) of a salted password.
    pub fn keys(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let client_key = self.hmac(salted_password, b"Client Key");
        let stored_key = self.hash(&client_key);
        let server_key = self.hmac(salted_password, b"Server Key");
        (stored_key, server_key)
    }
}

/// A credential as the exchange needs it.
#[derive(Debug, Clone)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// The server's state between the client's first and final messages.
#[derive(Debug)]
pub struct ScramExchange {
    mechanism: ScramMechanism,
    user: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// None for an unknown user: the exchange runs to the end with made-up values and fails
    /// like a wrong password, so the answer never tells whether the user exists.
    credential: Option<Credential>,
}

/// Why an exchange failed (logged, never sent: the client sees one generic message).
pub type ScramError = String;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random number generator works");
    b
}

/// A fresh random salt for a new credential.
pub fn new_salt() -> Vec<u8> {
    random_bytes::<16>().to_vec()
}

/// Decodes `saslname` (RFC 5802: `=2C` is a comma, `=3D` an equals sign).
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("bad escape in user name".into()),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ScramExchange {
    /// Handles the client-first message and returns the server-first message.
    /// `lookup` finds the stored credential of a user; `fake_salt` makes a stable salt for a
    /// user that does not exist.
    pub fn start(
        mechanism: ScramMechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
        fake_salt: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<(ScramExchange, Vec<u8>), ScramError> {
        let msg = std::str::from_utf8(client_first).map_err(|_| "client-first is not UTF-8")?;
        // gs2-header: channel binding flag, optional authzid, then the bare message.
        let mut parts = msg.splitn(3, ',');
        let cb = parts.next().unwrap_or("");
        let authzid = parts.next().ok_or("client-first has no gs2 header")?;
        let bare = parts.next().ok_or("client-first has no bare message")?;
        if cb != "n" && cb != "y" {
            return Err(format!("channel binding {cb:?} is not supported"));
        }
        let gs2_header = format!("{cb},{authzid},");
        let mut user = None;
        let mut client_nonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                user = Some(decode_saslname(v)?);
            } else if let Some(v) = attr.strip_prefix("r=") {
                client_nonce = Some(v.to_string());
            } else if attr.starts_with("m=") {
                return Err("mandatory extensions are not supported".into());
            } else if attr.starts_with("tokenauth=") {
                return Err("delegation tokens are not supported".into());
            }
        }
        let user = user.ok_or("client-first has no user name")?;
        let client_nonce = client_nonce.ok_or("client-first has no nonce")?;
        if client_nonce.is_empty() || client_nonce.contains(',') {
            return Err("bad client nonce".into());
        }
        if let Some(a) = authzid.strip_prefix("a=")
            && decode_saslname(a)? != user
        {
            return Err("authorization id differs from the user name".into());
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (fake_salt(&user), MIN_ITERATIONS),
        };
        let nonce = format!(
            "{client_nonce}{}",
            B64.encode(random_bytes::<18>()).replace(['+', '/'], "x")
        );
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let reply = server_first.clone().into_bytes();
        Ok((
            ScramExchange {
                mechanism,
                user,
                gs2_header,
                client_first_bare: bare.to_string(),
                server_first,
                nonce,
                credential,
            },
            reply,
        ))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| "client-final is not UTF-8")?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or("client-final has no proof")?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if channel != Some(B64.encode(self.gs2_header.as_bytes()).as_str()) {
            return Err("channel binding does not match the gs2 header".into());
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err("nonce does not match".into());
        }
        let proof = B64.decode(proof).map_err(|_| "proof is not base64")?;
        let Some(credential) = self.credential else {
            return Err(format!("unknown user {:?}", self.user));
        };
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = self
            .mechanism
            .hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err("proof has the wrong length".into());
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let computed = self.mechanism.hash(&client_key);
        if !bool::from(computed.ct_eq(&credential.stored_key)) {
            return Err(format!("wrong password for user {:?}", self.user));
        }
        let server_signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of the exchange, written from RFC 5802 for the test.
    fn client_final(
        mech: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored_key = mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mech.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = mech.hmac(&salted, b"Server Key");
        let expected_server = mech.hmac(&server_key, auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            format!("v={}", B64.encode(expected_server)).into_bytes(),
        )
    }

    fn credential(mech: ScramMechanism, password: &str) -> Credential {
        let salt = b"0123456789abcdef".to_vec();
        let salted = mech.salted_password(password.as_bytes(), &salt, 4096);
        let (stored_key, server_key) = mech.keys(&salted);
        Credential {
            salt,
            stored_key,
            server_key,
            iterations: 4096,
        }
    }

    #[test]
    fn rfc7677_keys() {
        // RFC 7677 section 3: user "user", password "pencil".
        let mech = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = mech.salted_password(b"pencil", &salt, 4096);
        let client_key = mech.hmac(&salted, b"Client Key");
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = mech.hmac(&mech.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let (_, server_key) = mech.keys(&salted);
        assert_eq!(
            B64.encode(mech.hmac(&server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn exchange_accepts_the_password_and_refuses_others() {
        for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let cred = credential(mech, "s3cret");
            let bare = "n=alice,r=abcdefgh";
            let run = |password: &str, user_known: bool| {
                let cred = cred.clone();
                let (ex, first) = ScramExchange::start(
                    mech,
                    format!("n,,{bare}").as_bytes(),
                    |u| (u == "alice" && user_known).then_some(cred),
                    |_| b"fake-salt-16byte".to_vec(),
                )
                .unwrap();
                let first = String::from_utf8(first).unwrap();
                assert!(first.starts_with("r=abcdefgh"));
                let (fin, expected) = client_final(mech, password, bare, &first);
                ex.finish(fin.as_bytes()).map(|v| (v, expected))
            };
            let (got, expected) = run("s3cret", true).unwrap();
            assert_eq!(got, expected);
            assert!(run("wrong", true).is_err());
            assert!(run("s3cret", false).is_err());
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let m = ScramMechanism::Sha256;
        let none = |_: &str| None;
        let salt = |_: &str| vec![1u8; 16];
        assert!(ScramExchange::start(m, b"p=tls-unique,,n=a,r=x", none, salt).is_err());
        assert!(ScramExchange::start(m, b"n,,r=x", none, salt).is_err());
        assert!(ScramExchange::start(m, b"n,,n=a", none, salt).is_err());
        assert!(ScramExchange::start(m, b"n,,n=a,r=x,tokenauth=true", none, salt).is_err());
        assert!(ScramExchange::start(m, b"n,a=b,n=a,r=x", none, salt).is_err());
        assert_eq!(decode_saslname("a=2Cb=3D").unwrap(), "a,b=");
        let (ex, first) = ScramExchange::start(m, b"n,,n=a,r=x", none, salt).unwrap();
        let first = String::from_utf8(first).unwrap();
        let nonce = first.split(',').next().unwrap();
        assert!(ex.finish(format!("c=biws,{nonce}").as_bytes()).is_err());
    }
}
