//! Client configuration by Kafka's property names.
//!
//! Producers, consumers and admin clients are built from string properties, as in the Java
//! client (`bootstrap.servers`, `acks`, `group.id`, ...). [`Properties`] reads them once into
//! typed settings: every getter names its property, parses and range-checks the value, and marks
//! the property as used; [`Properties::finish`] then refuses any property that no getter asked
//! for, so a misspelt name fails at construction instead of being ignored. Every refusal is a
//! [`ClientError::Config`] naming the property, the value and what is allowed.
//!
//! [`CommonConfig`] holds what every kind of client shares: the bootstrap servers, the client
//! id, timeouts, and TLS/SASL security.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::auth::ClientSecurity;
use crate::connection::ConnectionConfig;
use crate::error::ClientError;

/// A configuration refusal: which property, which value, and why.
pub fn config_error(property: &str, value: &str, reason: impl Into<String>) -> ClientError {
    ClientError::Config {
        property: property.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Client properties being read into typed settings. Keys are Kafka's property names; values
/// are strings, as in a `.properties` file.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    values: BTreeMap<String, String>,
    used: BTreeSet<String>,
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Properties {
            values: iter
                .into_iter()
                .map(|(k, v)| (k.into().trim().to_string(), v.into().trim().to_string()))
                .collect(),
            used: BTreeSet::new(),
        }
    }
}

impl Properties {
    /// Reads a Java-style properties text: `key=value` (or `key: value`) lines, `#` and `!`
    /// comments.
    pub fn parse(text: &str) -> Properties {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .filter_map(|l| l.split_once(['=', ':']))
            .collect()
    }

    /// Sets a property (builder style).
    pub fn set(mut self, key: &str, value: impl ToString) -> Properties {
        self.values.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets a property only when it is not set yet (a default that depends on other settings).
    pub fn set_default(&mut self, key: &str, value: impl ToString) {
        self.values
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }

    /// Whether the user set `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The raw value of `key`, marking it used. Empty values count as unset.
    pub fn string(&mut self, key: &str) -> Option<String> {
        self.used.insert(key.to_string());
        self.values.get(key).filter(|v| !v.is_empty()).cloned()
    }

    /// A string with a default.
    pub fn string_or(&mut self, key: &str, default: &str) -> String {
        self.string(key).unwrap_or_else(|| default.to_string())
    }

    /// A whole number in `min..=max`.
    pub fn i64_in(
        &mut self,
        key: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ClientError> {
        let Some(raw) = self.string(key) else {
            return Ok(default);
        };
        let v: i64 = raw
            .parse()
            .map_err(|_| config_error(key, &raw, "expected a whole number"))?;
        if v < min || v > max {
            return Err(config_error(
                key,
                &raw,
                format!("expected a value from {min} to {max}"),
            ));
        }
        Ok(v)
    }

    /// A whole number in `min..=max` that fits an `i32`.
    pub fn i32_in(
        &mut self,
        key: &str,
        default: i32,
        min: i32,
        max: i32,
    ) -> Result<i32, ClientError> {
        Ok(self.i64_in(key, default.into(), min.into(), max.into())? as i32)
    }

    /// A non-negative count of bytes, records or requests.
    pub fn usize_in(
        &mut self,
        key: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ClientError> {
        let v = self.i64_in(
            key,
            default as i64,
            min as i64,
            max.min(i64::MAX as usize) as i64,
        )?;
        Ok(v as usize)
    }

    /// A duration given in milliseconds, at least `min_ms`.
    pub fn millis(
        &mut self,
        key: &str,
        default_ms: u64,
        min_ms: u64,
    ) -> Result<Duration, ClientError> {
        let v = self.i64_in(key, default_ms as i64, min_ms as i64, i64::MAX)?;
        Ok(Duration::from_millis(v as u64))
    }

    /// `true` or `false` (case-insensitive).
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool, ClientError> {
        let Some(raw) = self.string(key) else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(config_error(key, &raw, "expected true or false")),
        }
    }

    /// One of `allowed` (compared case-insensitively); returns the allowed spelling.
    pub fn one_of(
        &mut self,
        key: &str,
        default: &'static str,
        allowed: &[&'static str],
    ) -> Result<&'static str, ClientError> {
        let Some(raw) = self.string(key) else {
            return Ok(default);
        };
        allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&raw))
            .copied()
            .ok_or_else(|| {
                config_error(key, &raw, format!("expected one of {}", allowed.join(", ")))
            })
    }

    /// A comma-separated list (empty entries dropped).
    pub fn list(&mut self, key: &str) -> Vec<String> {
        self.string(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Marks `keys` as known without reading them: Kafka properties this client accepts and
    /// ignores because they have no meaning here (they are listed in docs/client.md).
    pub fn accept_ignored(&mut self, keys: &[&str]) {
        for k in keys {
            self.used.insert((*k).to_string());
        }
    }

    /// All properties as a plain map (for the security settings, which read many optional
    /// properties at once), marking the given keys used.
    fn take_all(&mut self, keys: &[&str]) -> HashMap<String, String> {
        self.accept_ignored(keys);
        self.values.clone().into_iter().collect()
    }

    /// Ends the reading: a property that no getter asked for is refused, with the closest
    /// known name when one is near.
    pub fn finish(self) -> Result<(), ClientError> {
        let unknown = self.values.keys().find(|k| !self.used.contains(*k));
        match unknown {
            None => Ok(()),
            Some(k) => {
                let hint = self
                    .used
                    .iter()
                    .filter(|u| edit_distance(u, k) <= 2)
                    .min_by_key(|u| edit_distance(u, k))
                    .map(|u| format!("; did you mean {u}?"))
                    .unwrap_or_default();
                Err(config_error(
                    k,
                    &self.values[k],
                    format!("unknown property{hint}"),
                ))
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" hints on short property names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The security properties [`ClientSecurity::from_properties`] reads.
const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "ssl.truststore.location",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.keystore.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.jaas.config",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.token.endpoint.url",
];

/// What every client (producer, consumer, admin) is configured with.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `bootstrap.servers`: `host:port` pairs to learn the cluster from (required).
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent in every request (logs, quotas).
    pub client_id: String,
    /// `request.timeout.ms` (default 30000).
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms` (default 10000).
    pub connect_timeout: Duration,
    /// `retry.backoff.ms` (default 100).
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms` (default 1000).
    pub retry_backoff_max: Duration,
    /// `metadata.max.age.ms` (default 300000): metadata is refreshed at least this often.
    pub metadata_max_age: Duration,
    /// TLS and SASL, from `security.protocol`, `ssl.*` and `sasl.*`.
    pub security: ClientSecurity,
}

impl CommonConfig {
    /// Reads the shared properties; `default_client_id` is used when `client.id` is unset.
    pub fn read(p: &mut Properties, default_client_id: &str) -> Result<CommonConfig, ClientError> {
        let bootstrap_servers = p.list("bootstrap.servers");
        if bootstrap_servers.is_empty() {
            return Err(config_error(
                "bootstrap.servers",
                "",
                "required: a comma-separated list of host:port",
            ));
        }
        if let Some(bad) = bootstrap_servers.iter().find(|s| {
            s.rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(config_error("bootstrap.servers", bad, "expected host:port"));
        }
        let client_id = p.string_or("client.id", default_client_id);
        let request_timeout = p.millis("request.timeout.ms", 30_000, 1)?;
        let connect_timeout = p.millis("socket.connection.setup.timeout.ms", 10_000, 1)?;
        let retry_backoff = p.millis("retry.backoff.ms", 100, 0)?;
        let retry_backoff_max = p.millis("retry.backoff.max.ms", 1_000, 0)?;
        let metadata_max_age = p.millis("metadata.max.age.ms", 300_000, 0)?;
        let security = ClientSecurity::from_properties(&p.take_all(SECURITY_PROPERTIES)).map_err(
            |e| match e {
                ClientError::InvalidArgument(m) => config_error("security.protocol", "", m),
                other => other,
            },
        )?;
        Ok(CommonConfig {
            bootstrap_servers,
            client_id,
            request_timeout,
            connect_timeout,
            retry_backoff,
            retry_backoff_max,
            metadata_max_age,
            security,
        })
    }

    /// `bootstrap.servers` as one comma-separated string (what [`crate::Client::with_config`]
    /// takes).
    pub fn bootstrap(&self) -> String {
        self.bootstrap_servers.join(",")
    }

    /// The settings of each broker connection.
    pub fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            client_id: self.client_id.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            security: self.security.clone(),
            ..ConnectionConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs.iter().copied().collect()
    }

    #[test]
    fn typed_getters_parse_and_check_ranges() {
        let mut p = props(&[("linger.ms", "5"), ("acks", "ALL"), ("x", "maybe")]);
        assert_eq!(p.i64_in("linger.ms", 0, 0, 1000).unwrap(), 5);
        assert_eq!(
            p.one_of("acks", "all", &["0", "1", "all", "-1"]).unwrap(),
            "all"
        );
        let e = p.bool("x", false).unwrap_err().to_string();
        assert!(
            e.contains("x") && e.contains("maybe") && e.contains("true or false"),
            "{e}"
        );
        let mut p = props(&[("batch.size", "-3")]);
        let e = p
            .i64_in("batch.size", 16384, 0, i32::MAX.into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch.size") && e.contains("-3"), "{e}");
    }

    #[test]
    fn unknown_properties_are_refused_with_a_hint() {
        let mut p = props(&[("bootstrap.servers", "h:1"), ("linger.msx", "5")]);
        p.i64_in("linger.ms", 0, 0, 10).unwrap();
        CommonConfig::read(&mut p, "t").unwrap();
        let e = p.finish().unwrap_err().to_string();
        assert!(
            e.contains("linger.msx") && e.contains("did you mean linger.ms"),
            "{e}"
        );
    }

    #[test]
    fn bootstrap_servers_are_required_and_checked() {
        let e = CommonConfig::read(&mut props(&[]), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap.servers"), "{e}");
        let e = CommonConfig::read(&mut props(&[("bootstrap.servers", "nohost")]), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nohost"), "{e}");
        let c = CommonConfig::read(&mut props(&[("bootstrap.servers", "a:1, b:2")]), "t").unwrap();
        assert_eq!(c.bootstrap(), "a:1,b:2");
    }

    #[test]
    fn properties_text_is_parsed() {
        let mut p = Properties::parse("# c\nacks = all\n! x\nclient.id: me\n\n");
        assert_eq!(p.string("acks").as_deref(), Some("all"));
        assert_eq!(p.string("client.id").as_deref(), Some("me"));
        p.finish().unwrap();
    }
}
