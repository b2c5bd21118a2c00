//! Arguments and helpers shared by the client subcommands.

use strom_client::{
    Admin, AdminConfig, Client, ClientError, ClientSecurity, ConnectionConfig, Properties,
};

/// Where to connect.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Broker to bootstrap from, as host:port (a comma-separated list is tried in order)
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "STROM_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_server: String,
    /// Client properties for TLS and SASL (Kafka's --command-config): security.protocol,
    /// ssl.truststore.location, ssl.keystore.location (or ssl.certificate.location and
    /// ssl.key.location), sasl.mechanism, sasl.username, sasl.password or sasl.jaas.config;
    /// for OAUTHBEARER sasl.oauthbearer.token.endpoint.url=file:///token-file or
    /// unsecuredLoginStringClaim_sub in sasl.jaas.config
    #[arg(long, value_name = "FILE", env = "STROM_COMMAND_CONFIG")]
    pub command_config: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    /// Connection settings, with TLS and SASL from --command-config.
    pub fn connection_config(&self) -> anyhow::Result<ConnectionConfig> {
        let mut config = ConnectionConfig::default();
        if let Some(path) = &self.command_config {
            config.security = ClientSecurity::from_file(path).map_err(friendly)?;
        }
        Ok(config)
    }

    /// The connection layer alone, for the tools that move records and need no admin call
    /// (the bench).
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::with_config(&self.bootstrap_server, self.connection_config()?).map_err(friendly)
    }

    /// The admin client every subcommand talks through: `bootstrap.servers` from
    /// --bootstrap-server, client id `strom-cli`, TLS and SASL from --command-config.
    pub fn admin(&self) -> anyhow::Result<Admin> {
        let connection = self.connection_config()?;
        let properties = Properties::default()
            .set("bootstrap.servers", &self.bootstrap_server)
            .set("client.id", &connection.client_id);
        let mut config = AdminConfig::from_properties(properties).map_err(friendly)?;
        config.common.security = connection.security;
        Admin::with_config(config).map_err(friendly)
    }
}

/// How data is printed.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Human-readable text (tables, or the --format template for consume)
    #[default]
    #[value(alias = "text")]
    Table,
    /// JSON: one document, or one object per line for consume
    Json,
}

/// Turns a client error into a message for the terminal, with a hint where one helps.
pub fn friendly(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Connect { .. } => {
            anyhow::anyhow!(
                "{e}\nhint: is a broker running there? Start one with `strom server`, or pass --bootstrap-server"
            )
        }
        ClientError::Timeout { .. } => anyhow::anyhow!("{e}\nhint: the broker is not answering"),
        other => anyhow::Error::new(other),
    }
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// A table without borders, easy to read and to grep.
pub fn table(header: Vec<&str>) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(header);
    t
}

/// Prints a JSON value, pretty.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Bytes as text: UTF-8 where valid, replacement characters elsewhere.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `GET path` from a broker's admin listener (`host:port`), parsed as JSON.
pub async fn admin_get_json(admin: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = admin.strip_prefix("http://").unwrap_or(admin);
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        s.take(16 * 1024 * 1024).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(std::time::Duration::from_secs(10), io)
        .await
        .map_err(|_| anyhow::anyhow!("admin listener {addr}: no answer within 10 s"))?
        .with_context(|| format!("admin listener {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("admin listener {addr}: malformed HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        anyhow::bail!(
            "admin listener {addr}: {path} answered {status}: {}",
            body.trim()
        );
    }
    serde_json::from_str(body).with_context(|| format!("admin listener {addr}: {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(
            parse_key_value("retention.ms=1000").unwrap(),
            ("retention.ms".to_string(), "1000".to_string())
        );
        assert_eq!(parse_key_value("a=b=c").unwrap().1, "b=c");
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
