//! What the benchmark binaries share: the broker child process and readings from /proc.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `strom server` child process on a free loopback port with a temporary data directory;
/// stopped with SIGTERM when dropped.
pub struct Broker {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Broker {
    /// Starts `bin server` and waits until it listens.
    pub fn start(bin: &Path) -> Broker {
        let data = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // No admin listener: the default port may be taken by another broker.
            .args(["--set", "admin.listener="])
            .args(["--set", "schema.registry.listener="])
            .env("STROM_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "strom did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            child,
            port,
            _data: data,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// A `VmXXX:` line of /proc/PID/status in KiB.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS of a process (VmHWM) to its current RSS.
pub fn reset_peak_rss(pid: &str) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The strom binary: `explicit` when given, else `strom` next to the running program (i.e.
/// target/release/strom for target/release/strom-macro-bench).
pub fn strom_bin(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("exe dir").join("strom")
}

/// `strom topics create TOPIC --partitions N` against `bootstrap`.
pub fn create_topic(bin: &Path, bootstrap: &str, topic: &str, partitions: i32) {
    let status = Command::new(bin)
        .args(["topics", "create", topic, "--partitions"])
        .arg(partitions.to_string())
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .stdout(Stdio::null())
        .status()
        .expect("strom topics create");
    assert!(status.success(), "creating {topic} failed");
}
