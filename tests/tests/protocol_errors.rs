//! Bad input on the wire: an oversized frame, an undecodable body or an unknown API closes that
//! connection only; a too-new ApiVersions gets the v0 answer with UNSUPPORTED_VERSION.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use strom_e2e::Strom;

fn connect(strom: &Strom) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", strom.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A request with header v1 (api key, version, correlation id, client id) and a raw body.
fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation_id.to_be_bytes());
    f.extend_from_slice(&4i16.to_be_bytes());
    f.extend_from_slice(b"test");
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

fn read_response(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

fn is_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// ApiVersions v0: (api key, min, max) triples.
fn api_versions_v0(s: &mut TcpStream, version: i16) -> (i32, i16, Vec<(i16, i16, i16)>) {
    s.write_all(&frame(18, version, 42, &[])).unwrap();
    let r = read_response(s).expect("ApiVersions response");
    let cid = i32::from_be_bytes(r[0..4].try_into().unwrap());
    let err = i16::from_be_bytes(r[4..6].try_into().unwrap());
    let n = i32::from_be_bytes(r[6..10].try_into().unwrap());
    let mut apis = Vec::new();
    for i in 0..n as usize {
        let at = 10 + i * 6;
        let k = |o: usize| i16::from_be_bytes(r[at + o..at + o + 2].try_into().unwrap());
        apis.push((k(0), k(2), k(4)));
    }
    (cid, err, apis)
}

#[test]
fn api_versions_lists_the_registry_and_falls_back_to_v0() {
    let strom = Strom::start(&[]);
    let mut s = connect(&strom);
    let (cid, err, apis) = api_versions_v0(&mut s, 0);
    assert_eq!((cid, err), (42, 0));
    let find = |k: i16| apis.iter().find(|a| a.0 == k).copied();
    assert_eq!(find(0).map(|a| a.1), Some(0), "Produce advertised from v0");
    assert!(find(1).is_some() && find(3).is_some() && find(19).is_some());
    assert!(find(22).is_some(), "InitProducerId is advertised");
    assert!(
        find(38).is_none(),
        "CreateDelegationToken is not implemented and must not be advertised"
    );

    // A version newer than strom knows: error 35 in a v0 body, and the connection stays usable.
    let (cid, err, apis2) = api_versions_v0(&mut s, 99);
    assert_eq!((cid, err), (42, 35));
    assert_eq!(apis2, apis);
    let (_, err, _) = api_versions_v0(&mut s, 0);
    assert_eq!(err, 0);
}

#[test]
fn bad_frames_close_only_their_connection() {
    let strom = Strom::start(&["socket.request.max.bytes=1048576"]);
    let mut healthy = connect(&strom);
    assert_eq!(api_versions_v0(&mut healthy, 0).1, 0);

    // Larger than socket.request.max.bytes: refused from the size prefix alone.
    let mut s = connect(&strom);
    s.write_all(&(200 * 1024 * 1024i32).to_be_bytes()).unwrap();
    assert!(
        is_closed(&mut s),
        "oversized frame must close the connection"
    );

    // A Metadata v12 request whose body is garbage.
    let mut s = connect(&strom);
    s.write_all(&frame(3, 12, 1, &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]))
        .unwrap();
    assert!(
        is_closed(&mut s),
        "undecodable body must close the connection"
    );

    // An API key that does not exist.
    let mut s = connect(&strom);
    s.write_all(&frame(999, 0, 1, &[])).unwrap();
    assert!(
        is_closed(&mut s),
        "unknown API key must close the connection"
    );

    // Produce v2 is advertised for old clients' probing but not served.
    let mut s = connect(&strom);
    s.write_all(&frame(0, 2, 1, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
        .unwrap();
    assert!(is_closed(&mut s), "Produce v2 must be refused");

    // A negative size.
    let mut s = connect(&strom);
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(is_closed(&mut s));

    // The first connection never noticed.
    assert_eq!(api_versions_v0(&mut healthy, 0).1, 0);
    assert_eq!(api_versions_v0(&mut connect(&strom), 0).1, 0);
}

#[test]
fn a_frame_claiming_billions_of_elements_does_not_take_the_broker_down() {
    let strom = Strom::start(&[]);
    // DeleteGroups v0 whose group array claims 0x33000000 entries in a 14-byte frame: the
    // decoder reserves capacity for all of them before it finds the bytes missing.
    let body: [u8; 14] = [0x00, 0x2a, 0, 0, 0, 0, 0x2f, 0, 0, 0, 0x33, 0, 0, 0];
    for _ in 0..3 {
        let mut s = connect(&strom);
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        s.write_all(&frame).unwrap();
        assert!(is_closed(&mut s), "the bad frame must close its connection");
    }
    assert_eq!(
        api_versions_v0(&mut connect(&strom), 0).1,
        0,
        "the broker is still serving"
    );
}
