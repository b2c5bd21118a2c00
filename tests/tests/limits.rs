//! Connection limits: max.connections.per.ip closes connections beyond the limit at once;
//! max.connections makes further clients wait until a connection closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use strom_e2e::Strom;

/// An ApiVersions v0 request (header v1, no client id) with correlation id `id`.
fn api_versions(id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Sends ApiVersions and returns whether an answer with its correlation id came within
/// `wait`; an error or end of stream counts as no answer.
fn answers(s: &mut TcpStream, id: i32, wait: Duration) -> bool {
    if s.write_all(&api_versions(id)).is_err() {
        return false;
    }
    s.set_read_timeout(Some(wait)).unwrap();
    read_response(s).is_ok_and(|correlation_id| correlation_id == id)
}

/// Reads one whole response frame; returns its correlation id.
fn read_response(s: &mut TcpStream) -> std::io::Result<i32> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let mut frame = vec![0u8; i32::from_be_bytes(size).max(4) as usize];
    s.read_exact(&mut frame)?;
    Ok(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
}

fn connect(strom: &Strom) -> TcpStream {
    TcpStream::connect(("127.0.0.1", strom.port)).unwrap()
}

#[test]
fn per_ip_limit_closes_extra_connections() {
    let strom = Strom::start(&["max.connections.per.ip=2"]);
    // Start-up probing by the test support may still hold a slot for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let mut a = connect(&strom);
    let mut b = connect(&strom);
    assert!(answers(&mut a, 1, Duration::from_secs(5)));
    assert!(answers(&mut b, 2, Duration::from_secs(5)));
    let mut c = connect(&strom);
    assert!(
        !answers(&mut c, 3, Duration::from_secs(2)),
        "a third connection is refused"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    let mut d = connect(&strom);
    assert!(
        answers(&mut d, 4, Duration::from_secs(5)),
        "a freed slot is usable again"
    );
    assert!(answers(&mut b, 5, Duration::from_secs(5)));
}

#[test]
fn max_connections_makes_new_clients_wait() {
    let strom = Strom::start(&["max.connections=2"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut a = connect(&strom);
    let mut b = connect(&strom);
    assert!(answers(&mut a, 1, Duration::from_secs(5)));
    assert!(answers(&mut b, 2, Duration::from_secs(5)));
    let mut c = connect(&strom);
    assert!(
        !answers(&mut c, 3, Duration::from_secs(1)),
        "the third waits"
    );
    drop(a);
    // Once a slot frees, the waiting connection is accepted and its request answered.
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_response(&mut c).unwrap(), 3);
}
