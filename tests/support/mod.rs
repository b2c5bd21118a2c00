//! Test support: start the real `strom` binary on a free loopback port with its own data
//! directory, stop it gracefully or with SIGKILL, restart it on the same data.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `strom` binary built next to this test (target/<profile>/strom), or `STROM_BIN` (a
/// relative path is taken from the workspace root, where the commands in the docs run).
pub fn strom_bin() -> PathBuf {
    if let Ok(p) = std::env::var("STROM_BIN") {
        let p = PathBuf::from(p);
        return if p.is_relative() {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
        } else {
            p
        };
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("strom");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p strom` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive loopback ports that were all free a moment ago.
///
/// They come from outside the kernel's ephemeral range (`net.ipv4.ip_local_port_range`): a port
/// that binding port 0 hands out lies inside it, where any outgoing connection (a client's, a
/// broker's to its peers) may take it before the broker binds it, or before a killed broker
/// binds it again, and the broker stops with "Address already in use". Each test process
/// starts at its own place in the range and moves on from there, so ports are not handed out
/// twice within a process and rarely across processes; each is checked by binding it.
pub fn free_ports(n: usize) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = n.max(1) as u32;
    let Some((lo, hi)) = non_ephemeral_ports() else {
        // No room outside the ephemeral range: fall back to a port the kernel picks.
        assert_eq!(
            n, 1,
            "no port range outside the ephemeral one for {n} ports"
        );
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    };
    let span = hi - lo - n;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..2_000 {
        let offset = NEXT.fetch_add(n, Ordering::Relaxed);
        let base = lo + (start + offset) % span;
        let held: Vec<TcpListener> = (base..base + n)
            .map_while(|p| TcpListener::bind(("127.0.0.1", p as u16)).ok())
            .collect();
        if held.len() == n as usize {
            return base as u16;
        }
    }
    panic!("no {n} consecutive free ports in {lo}..{hi}");
}

/// A range of ports outside the ephemeral one, at least 2,000 wide: below it when there is room
/// above 10,000, else above it.
fn non_ephemeral_ports() -> Option<(u32, u32)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".into());
    let mut it = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u32>().ok());
    let (low, high) = (it.next()?, it.next()?);
    if low >= 12_000 {
        Some((10_000, low))
    } else if high <= 63_000 {
        Some((high + 1, 65_536))
    } else {
        None
    }
}

/// A running broker process.
pub struct Strom {
    child: Option<Child>,
    pub port: u16,
    /// Port of the admin HTTP listener (/metrics, /health/*, /v1/*).
    pub admin_port: u16,
    /// Port of the Schema Registry's REST API (`schema.registry.listener`).
    pub registry_port: u16,
    pub data: tempfile::TempDir,
    extra: Vec<String>,
    /// With [`Strom::start_logged`]: the log filter and the file that holds the broker's
    /// stderr.
    log: Option<(String, tempfile::NamedTempFile)>,
}

impl Strom {
    /// Starts a broker with extra `--set NAME=VALUE` properties.
    pub fn start(props: &[&str]) -> Strom {
        let data = tempfile::tempdir().expect("tempdir");
        let mut s = Strom {
            child: None,
            port: free_port(),
            admin_port: free_port(),
            registry_port: free_port(),
            data,
            extra: props.iter().map(|s| s.to_string()).collect(),
            log: None,
        };
        s.spawn();
        s
    }

    /// Starts a broker (as [`Strom::start_listeners`]) whose log lines, filtered by `filter`
    /// (`STROM_LOG` syntax), are kept for [`Strom::log_text`].
    pub fn start_logged(names: &[&str], props: &[&str], filter: &str) -> Strom {
        let mut s = Strom::start_listeners_unstarted(names, props);
        s.log = Some((
            filter.to_string(),
            tempfile::NamedTempFile::new().expect("log file"),
        ));
        s.spawn();
        s
    }

    /// What the broker has logged so far (empty unless started with [`Strom::start_logged`]).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|(_, f)| std::fs::read_to_string(f.path()).ok())
            .unwrap_or_default()
    }

    /// Starts a broker with one listener per name (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`,
    /// `SASL_SSL`, each on its own free loopback port) and extra properties. The first listener
    /// is the one `port` and `bootstrap` name.
    pub fn start_listeners(names: &[&str], props: &[&str]) -> Strom {
        let mut s = Strom::start_listeners_unstarted(names, props);
        s.spawn();
        s
    }

    fn start_listeners_unstarted(names: &[&str], props: &[&str]) -> Strom {
        let ports: Vec<(String, u16)> =
            names.iter().map(|n| (n.to_string(), free_port())).collect();
        let listeners = ports
            .iter()
            .map(|(n, p)| format!("{n}://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let data = tempfile::tempdir().expect("tempdir");
        let mut extra = vec![format!("listeners={listeners}")];
        extra.extend(props.iter().map(|s| s.to_string()));
        Strom {
            child: None,
            port: ports[0].1,
            admin_port: free_port(),
            registry_port: free_port(),
            data,
            extra,
            log: None,
        }
    }

    /// A node started without waiting for it: on `port`, with `extra` properties.
    fn spawn_node(port: u16, extra: Vec<String>) -> Strom {
        let mut s = Strom {
            child: None,
            port,
            admin_port: free_port(),
            registry_port: free_port(),
            data: tempfile::tempdir().expect("tempdir"),
            extra,
            log: None,
        };
        s.spawn_process();
        s
    }

    /// The port of the listener named `name` (as given in `listeners`).
    pub fn listener_port(&self, name: &str) -> u16 {
        let listeners = self
            .extra
            .iter()
            .find_map(|p| p.strip_prefix("listeners="))
            .expect("started with start_listeners");
        listeners
            .split(',')
            .find_map(|l| {
                let (n, addr) = l.split_once("://")?;
                (n == name).then(|| addr.rsplit_once(':')?.1.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no listener {name}"))
    }

    /// `127.0.0.1:<port>` of the listener named `name`.
    pub fn listener(&self, name: &str) -> String {
        format!("127.0.0.1:{}", self.listener_port(name))
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        self.spawn_process();
        self.wait_listening();
    }

    /// Starts the process without waiting for it to listen.
    fn spawn_process(&mut self) {
        let mut cmd = Command::new(strom_bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--set")
            .arg(format!("admin.listener=127.0.0.1:{}", self.admin_port))
            .arg("--set")
            .arg(format!(
                "schema.registry.listener=127.0.0.1:{}",
                self.registry_port
            ))
            .env(
                "STROM_LOG",
                std::env::var("STROM_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        if let Some((filter, file)) = &self.log {
            let out = std::fs::OpenOptions::new()
                .append(true)
                .open(file.path())
                .expect("log file");
            cmd.env("STROM_LOG", filter).stderr(out);
        }
        for p in &self.extra {
            cmd.arg("--set").arg(p);
        }
        let child = cmd.spawn().expect("spawn strom");
        self.child = Some(child);
    }

    /// Waits until the Kafka listener accepts connections (30 s at most).
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("strom exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "strom did not start listening within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => {
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    if let Ok(Some(status)) = c.try_wait() {
                        return status.success();
                    }
                    if Instant::now() > deadline {
                        let _ = c.kill();
                        let _ = c.wait();
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            None => true,
        }
    }

    /// Runs `strom ARGS` against this broker: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(strom_bin())
            .args(args)
            .env("STROM_BOOTSTRAP_SERVER", self.bootstrap())
            .env("STROM_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run strom");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts the broker again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        self.spawn();
    }

    /// Starts the broker again without waiting for it (to watch it recover).
    pub fn restart_nowait(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        self.spawn_process();
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// `GET path` on the admin listener: (status, body), or `None` if nothing answers.
    pub fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        http_request(self.admin_port, "GET", path, "")
    }

    /// `PUT path` with `body` on the admin listener.
    pub fn admin_put(&self, path: &str, body: &str) -> Option<(u16, String)> {
        http_request(self.admin_port, "PUT", path, body)
    }
}

/// A cluster of brokers on loopback, each a voter of the metadata quorum (node ids 1..=n).
pub struct Cluster {
    pub nodes: Vec<Strom>,
}

impl Cluster {
    /// Starts `n` brokers with extra properties and waits until all of them serve.
    pub fn start(n: usize, props: &[&str]) -> Cluster {
        let quorum_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let voters = quorum_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut extra = vec![
                format!("node.id={}", i + 1),
                format!("controller.quorum.voters={voters}"),
            ];
            extra.extend(props.iter().map(|s| s.to_string()));
            // A broker serves once a quorum exists: start them all before waiting.
            nodes.push(Strom::spawn_node(free_port(), extra));
        }
        for s in &mut nodes {
            s.wait_listening();
        }
        let cluster = Cluster { nodes };
        cluster.wait_brokers(n);
        cluster
    }

    /// Waits (30 s at most) until every running broker lists `n` live brokers in Metadata.
    pub fn wait_brokers(&self, n: usize) {
        use rdkafka::producer::{BaseProducer, Producer};
        let deadline = Instant::now() + Duration::from_secs(30);
        for s in self
            .nodes
            .iter()
            .filter(|s| s.child.is_some() && !Self::controller_only(s))
        {
            let producer: BaseProducer = client_config(&s.bootstrap()).create().expect("client");
            loop {
                let seen: Vec<i32> = producer
                    .client()
                    .fetch_metadata(None, Duration::from_secs(5))
                    .map(|md| md.brokers().iter().map(|b| b.id()).collect())
                    .unwrap_or_default();
                if seen.len() == n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "broker {} sees brokers {seen:?}, not {n}",
                    s.bootstrap()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// A cluster with separate roles: `controllers` controller-only nodes (ids 1..) forming
    /// the metadata quorum, and `brokers` broker-only nodes after them that follow it.
    pub fn start_roles(controllers: usize, brokers: usize, props: &[&str]) -> Cluster {
        let quorum_ports: Vec<u16> = (0..controllers).map(|_| free_port()).collect();
        let voters = quorum_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..controllers + brokers {
            let controller = i < controllers;
            let mut extra = vec![
                format!("node.id={}", i + 1),
                format!("controller.quorum.voters={voters}"),
                format!(
                    "process.roles={}",
                    if controller { "controller" } else { "broker" }
                ),
            ];
            extra.extend(props.iter().map(|s| s.to_string()));
            // A controller serves only its quorum address: that is what start-up waits for.
            let port = quorum_ports.get(i).copied().unwrap_or_else(free_port);
            nodes.push(Strom::spawn_node(port, extra));
        }
        for s in &mut nodes {
            s.wait_listening();
        }
        let cluster = Cluster { nodes };
        cluster.wait_brokers(brokers);
        cluster
    }

    /// Creates a topic through `strom topics create` on the first broker and waits until every
    /// partition has a leader and `replication_factor` replicas in sync.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[&str],
    ) {
        let first = self
            .nodes
            .iter()
            .find(|s| !Self::controller_only(s) && s.child.is_some())
            .expect("a running broker");
        let (p, rf) = (partitions.to_string(), replication_factor.to_string());
        let mut args = vec![
            "topics",
            "create",
            name,
            "--partitions",
            &p,
            "--replication-factor",
            &rf,
        ];
        for c in configs {
            args.extend(["--config", c]);
        }
        let (ok, out, err) = first.cli(&args);
        assert!(ok, "topics create {name}: {out}{err}");
        self.wait_in_sync(name, replication_factor as usize, Duration::from_secs(30));
    }

    /// Waits until every partition of `topic` has a leader and `replicas` in its ISR.
    pub fn wait_in_sync(&self, topic: &str, replicas: usize, within: Duration) {
        use rdkafka::producer::{BaseProducer, Producer};
        let bootstrap = self.bootstrap();
        let deadline = Instant::now() + within;
        loop {
            let producer: BaseProducer = client_config(&bootstrap).create().expect("client");
            let parts: Vec<(i32, usize)> = producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .ok()
                .and_then(|md| {
                    md.topics().iter().find(|t| t.name() == topic).map(|t| {
                        t.partitions()
                            .iter()
                            .map(|p| (p.leader(), p.isr().len()))
                            .collect()
                    })
                })
                .unwrap_or_default();
            if !parts.is_empty() && parts.iter().all(|(l, isr)| *l >= 0 && *isr == replicas) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "partitions of {topic} not in sync: {parts:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether node `s` is a controller only (it serves no clients).
    fn controller_only(s: &Strom) -> bool {
        s.extra.iter().any(|p| p == "process.roles=controller")
    }

    /// Every broker's address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|s| !Self::controller_only(s))
            .map(Strom::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The addresses of the brokers other than `id`, comma-separated.
    pub fn bootstrap_without(&self, id: i32) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, s)| *i as i32 + 1 != id && !Self::controller_only(s))
            .map(|(_, s)| s.bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The broker with node id `id`.
    pub fn node(&mut self, id: i32) -> &mut Strom {
        &mut self.nodes[(id - 1) as usize]
    }
}

/// Acknowledged deliveries: (partition, offset, the record's key as a number).
pub type Acked = std::sync::Arc<std::sync::Mutex<Vec<(i32, i64, u64)>>>;

/// A producer context that records each acknowledgement (keys are decimal numbers) and each
/// delivery error.
pub struct AckContext(pub Acked, pub std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl rdkafka::ClientContext for AckContext {}

impl rdkafka::producer::ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        match result {
            Ok(m) => {
                let n: u64 = std::str::from_utf8(m.key().expect("keyed record"))
                    .expect("UTF-8 key")
                    .parse()
                    .expect("numeric key");
                self.0.lock().unwrap().push((m.partition(), m.offset(), n));
            }
            Err((e, _)) => self.1.lock().unwrap().push(e.to_string()),
        }
    }
}

impl Drop for Strom {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Hands a record to a `BaseProducer`, serving its callbacks while librdkafka's queue is full;
/// any other refusal fails the test.
pub fn send_queued<'a, C, K, P>(
    producer: &rdkafka::producer::BaseProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'a, K, P, C::DeliveryOpaque>,
) where
    C: rdkafka::producer::ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("send failed: {e}"),
        }
    }
}

/// rdkafka client config pointing at a broker, with quick failure on a dead broker.
pub fn client_config(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("log_level", "3");
    c
}

/// rdkafka consumer config for assigned partitions: librdkafka wants a group id even when
/// partitions are assigned by hand; offsets are never committed.
pub fn consumer_config(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("group.id", "strom-e2e")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// The `n`-th payload of a test stream: `len` bytes that depend on `n`, so that any mix-up shows.
pub fn payload(n: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status, body), or `None` if the connection fails.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The value of one sample in a metrics exposition: `name{labels}` matched exactly on the name
/// and on every given label (other labels may be there); the sum over all matching samples, or
/// `None` if there is none.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (sample, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if sample != name {
            continue;
        }
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all && let Ok(v) = value.parse::<f64>() {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}
