//! Named listeners: `listeners`, `listener.security.protocol.map` and `advertised.listeners`.

use std::collections::BTreeMap;

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One configured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The listener name, upper case (`PLAINTEXT`, `SSL`, `INTERNAL`, ...).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// The address to bind; an empty host in the configuration binds every interface.
    pub host: String,
    pub port: u16,
}

/// Splits `NAME://host:port` into its parts. An empty host becomes `0.0.0.0`.
pub fn parse_endpoint(s: &str) -> Result<(String, String, u16), String> {
    let s = s.trim();
    let (name, addr) = s
        .split_once("://")
        .ok_or_else(|| format!("listener {s:?} is not NAME://host:port"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("listener {s:?} is not NAME://host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("listener {s:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok((name.trim().to_ascii_uppercase(), host.to_string(), port))
}

/// Parses `listener.security.protocol.map` (`NAME:PROTOCOL,...`).
pub fn parse_protocol_map(map: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut out = BTreeMap::new();
    for item in map.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, proto) = item.split_once(':').ok_or_else(|| {
            format!("listener.security.protocol.map entry {item:?} is not NAME:PROTOCOL")
        })?;
        let proto = SecurityProtocol::parse(proto).ok_or_else(|| {
            format!("unknown security protocol {proto:?} in listener.security.protocol.map")
        })?;
        out.insert(name.trim().to_ascii_uppercase(), proto);
    }
    Ok(out)
}

/// Every listener of `listeners`, with its protocol from the map (a listener named after a
/// protocol needs no map entry). Names and ports must be distinct.
pub fn parse_listeners(listeners: &str, protocol_map: &str) -> Result<Vec<ListenerSpec>, String> {
    let map = parse_protocol_map(protocol_map)?;
    let mut out: Vec<ListenerSpec> = Vec::new();
    for item in listeners
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (name, host, port) = parse_endpoint(item)?;
        let protocol = map
            .get(&name)
            .copied()
            .or_else(|| SecurityProtocol::parse(&name))
            .ok_or_else(|| {
                format!("listener {name} has no entry in listener.security.protocol.map")
            })?;
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listener {name} is configured twice"));
        }
        if port != 0 && out.iter().any(|l| l.port == port && l.host == host) {
            return Err(format!("two listeners use {host}:{port}"));
        }
        out.push(ListenerSpec {
            name,
            protocol,
            host,
            port,
        });
    }
    if out.is_empty() {
        return Err("listeners is empty".into());
    }
    Ok(out)
}

/// Parses `advertised.listeners` into listener name -> (host, port).
pub fn parse_advertised(advertised: &str) -> Result<BTreeMap<String, (String, u16)>, String> {
    let mut out = BTreeMap::new();
    for item in advertised
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (name, host, port) = parse_endpoint(item)?;
        out.insert(name, (host, port));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_MAP: &str =
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

    #[test]
    fn listeners_with_protocols() {
        let l = parse_listeners(
            "PLAINTEXT://127.0.0.1:9092, SSL://:9093,INTERNAL://[::1]:9094",
            &format!("{DEFAULT_MAP},INTERNAL:SASL_SSL"),
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!((l[1].host.as_str(), l[1].port), ("0.0.0.0", 9093));
        assert_eq!(l[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(l[2].name, "INTERNAL");
        assert_eq!(l[2].host, "::1");
        assert!(l[2].protocol.uses_tls() && l[2].protocol.uses_sasl());
        assert!(parse_listeners("FOO://:1", DEFAULT_MAP).is_err());
        assert!(parse_listeners("SSL://:1,SSL://:2", DEFAULT_MAP).is_err());
        assert!(parse_listeners("PLAINTEXT://h:1,SSL://h:1", DEFAULT_MAP).is_err());
        assert!(parse_listeners("PLAINTEXT://h", DEFAULT_MAP).is_err());
        assert!(parse_listeners("", DEFAULT_MAP).is_err());
        assert!(parse_protocol_map("X:TLS").is_err());
        let a = parse_advertised("PLAINTEXT://broker1:19092,ssl://broker1:19093").unwrap();
        assert_eq!(a["SSL"], ("broker1".to_string(), 19093));
    }
}
