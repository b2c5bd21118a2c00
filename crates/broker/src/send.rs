//! Writing responses to a connection. Fetch responses are encoded pieces around each
//! partition's records; on a plaintext TCP connection the records go from the segment files to
//! the socket with `sendfile(2)` (no copy through user space), on any other stream (TLS) they
//! are read into memory chunk by chunk and written with the pieces. The chunks come out of a
//! broker-wide budget ([`FetchMemory`], `fetch.memory.budget.bytes`), so the record bytes that
//! all connections hold in memory at once never exceed it, however large the responses.

use std::io;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use strom_protocol::ProtocolError;
use strom_storage::{FileSlice, LogSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The records of one partition of a Fetch response: whole batches in slices of its log (file
/// regions, and the last bytes of a segment written with direct I/O in memory).
#[derive(Clone, Debug, Default)]
pub struct PartitionRecords {
    pub slices: Vec<LogSlice>,
    /// Sum of the slices' lengths.
    pub len: u32,
    /// The topic's bytes-out counter, counted when the records are sent
    /// (`FetchParts::count_bytes_out`): a throttled fetch drops them unsent.
    pub bytes_out: Option<prometheus_client::metrics::counter::Counter>,
}

impl PartitionRecords {
    /// Copies the records into memory.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        for slice in &self.slices {
            slice.read_into(&mut out)?;
        }
        Ok(out)
    }
}

/// A response waiting to be written.
#[derive(Debug)]
pub enum Outgoing {
    /// A whole encoded frame.
    Frame(BytesMut),
    /// A Fetch response: `pieces[0] records[0] pieces[1] ... records[n-1] pieces[n]`, see
    /// `strom_protocol::fetch_frame`.
    Fetch {
        pieces: Vec<Bytes>,
        records: Vec<PartitionRecords>,
    },
    /// A frame still being made (a Produce waiting for its fsync): written when ready, in its
    /// turn.
    Later(JoinHandle<Result<BytesMut, ProtocolError>>),
}

/// A stream responses are written to. A plaintext TCP stream offers its socket for sendfile.
pub trait ResponseStream: AsyncWrite + Unpin + Send {
    /// The TCP socket underneath, if the bytes written to it go to the wire unchanged.
    fn plaintext_socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl ResponseStream for OwnedWriteHalf {
    fn plaintext_socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl ResponseStream for tokio::io::DuplexStream {}

/// The writing half of a TLS (or any other wrapped) stream: the copy path.
impl<S: tokio::io::AsyncWrite + Send> ResponseStream for tokio::io::WriteHalf<S> {}

/// The largest buffer one connection's copy path fills before writing it out.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Memory for the copy path of fetch responses (streams without sendfile: TLS), shared by all
/// connections of a broker. A connection borrows one chunk of it (256 KiB, or the whole
/// budget or the whole response when smaller) while it writes a fetch response, fills that chunk with pieces
/// and records, writes it, refills it, and gives it back when the response is written; a
/// connection that finds the budget taken waits for a chunk.
#[derive(Debug)]
pub struct FetchMemory {
    permits: Semaphore,
    budget_bytes: usize,
    chunk_bytes: usize,
}

impl FetchMemory {
    /// A budget of `budget_bytes` (at least one byte of it is always available).
    pub fn new(budget_bytes: usize) -> FetchMemory {
        let budget = budget_bytes.clamp(1, Semaphore::MAX_PERMITS);
        FetchMemory {
            permits: Semaphore::new(budget),
            budget_bytes: budget,
            chunk_bytes: budget.min(COPY_CHUNK_BYTES),
        }
    }

    /// Bytes of the budget in use right now.
    pub fn in_use(&self) -> usize {
        self.budget_bytes
            .saturating_sub(self.permits.available_permits())
    }
}

impl Default for FetchMemory {
    /// The default of `fetch.memory.budget.bytes` (64 MiB).
    fn default() -> FetchMemory {
        FetchMemory::new(64 * 1024 * 1024)
    }
}

/// Writes one response.
pub async fn write_outgoing<W: ResponseStream>(
    w: &mut W,
    out: Outgoing,
    memory: &FetchMemory,
) -> io::Result<()> {
    match out {
        Outgoing::Frame(buf) => w.write_all(&buf).await,
        Outgoing::Later(pending) => match pending.await {
            Ok(Ok(buf)) => w.write_all(&buf).await,
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(e) => Err(io::Error::other(e)),
        },
        Outgoing::Fetch { pieces, records } => {
            if let Some(socket) = w.plaintext_socket() {
                write_fetch_zero_copy(socket, &pieces, &records).await
            } else {
                write_fetch_copied(w, &pieces, &records, memory).await
            }
        }
    }
}

/// The copy path: the frame goes out in chunks of at most `memory.chunk_bytes`, each filled
/// with pieces and record bytes read from the segment files.
async fn write_fetch_copied<W: AsyncWrite + Unpin>(
    w: &mut W,
    pieces: &[Bytes],
    records: &[PartitionRecords],
    memory: &FetchMemory,
) -> io::Result<()> {
    // A small response takes only what it needs.
    let frame_bytes = pieces.iter().map(Bytes::len).sum::<usize>()
        + records.iter().map(|r| r.len as usize).sum::<usize>();
    let chunk = memory.chunk_bytes.min(frame_bytes.max(1));
    let _permit = memory
        .permits
        .acquire_many(chunk as u32)
        .await
        .map_err(io::Error::other)?;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
    for (i, piece) in pieces.iter().enumerate() {
        let mut piece = &piece[..];
        while !piece.is_empty() {
            let n = piece.len().min(chunk - buf.len());
            buf.extend_from_slice(&piece[..n]);
            piece = &piece[n..];
            if buf.len() == chunk {
                w.write_all(&buf).await?;
                buf.clear();
            }
        }
        let Some(r) = records.get(i) else { continue };
        for slice in &r.slices {
            let mut done = 0u32;
            while done < slice.len() {
                let n = (slice.len() - done).min((chunk - buf.len()) as u32);
                slice.read_range_into(done, n, &mut buf)?;
                done += n;
                if buf.len() == chunk {
                    w.write_all(&buf).await?;
                    buf.clear();
                }
            }
        }
    }
    if !buf.is_empty() {
        w.write_all(&buf).await?;
    }
    w.flush().await
}

/// The zero-copy path: pieces with `send` (MSG_MORE while more of the frame follows, so the
/// small pieces share packets with the records), records with `sendfile`.
async fn write_fetch_zero_copy(
    socket: &TcpStream,
    pieces: &[Bytes],
    records: &[PartitionRecords],
) -> io::Result<()> {
    // Bytes of the frame after each piece: a piece followed by nothing is sent without
    // MSG_MORE, which pushes the frame out.
    let mut after = vec![0u64; pieces.len()];
    let mut rest = 0u64;
    for i in (0..pieces.len()).rev() {
        after[i] = rest;
        rest += pieces[i].len() as u64;
        if i > 0 {
            rest += u64::from(records[i - 1].len);
        }
    }
    for (i, piece) in pieces.iter().enumerate() {
        let records_here = records.get(i).map_or(0, |r| u64::from(r.len));
        send_all(socket, piece, records_here + after[i] > 0).await?;
        if let Some(r) = records.get(i) {
            let mut left = records_here;
            for slice in &r.slices {
                left = left.saturating_sub(u64::from(slice.len()));
                match slice {
                    LogSlice::File(f) => sendfile_all(socket, f).await?,
                    LogSlice::Memory(b) => send_all(socket, b, left + after[i] > 0).await?,
                }
            }
        }
    }
    Ok(())
}

async fn send_all(socket: &TcpStream, mut buf: &[u8], more: bool) -> io::Result<()> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    let fd = socket.as_raw_fd();
    while !buf.is_empty() {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            // SAFETY: `buf` is a valid slice for the duration of the call.
            let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The most one sendfile call moves (the kernel's own limit).
const SENDFILE_MAX: u64 = 0x7fff_f000;

async fn sendfile_all(socket: &TcpStream, slice: &FileSlice) -> io::Result<()> {
    let out_fd = socket.as_raw_fd();
    let in_fd = slice.file.as_raw_fd();
    let mut offset = slice.position as libc::off_t;
    let end = slice.position + u64::from(slice.len);
    while (offset as u64) < end {
        socket.writable().await?;
        let count = (end - offset as u64).min(SENDFILE_MAX) as usize;
        let sent = socket.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the call (the slice holds its file, the
            // socket is borrowed); the kernel advances `offset`.
            let n = unsafe { libc::sendfile(out_fd, in_fd, &mut offset, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            // The file is shorter than the slice (truncated meanwhile): the frame cannot be
            // completed, so the connection must close.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file ended inside a fetched slice",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Pieces and file-backed records as a Fetch response would have them, plus the bytes the
    /// frame must consist of.
    fn sample() -> (
        Vec<Bytes>,
        Vec<PartitionRecords>,
        Vec<u8>,
        tempfile::NamedTempFile,
    ) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let f = Arc::new(std::fs::File::open(file.path()).unwrap());
        let slice = |position: u64, len: u32| {
            LogSlice::File(FileSlice {
                file: Arc::clone(&f),
                position,
                len,
            })
        };
        let tail = LogSlice::Memory(Bytes::from_static(b"the end of an active segment"));
        let records = vec![
            PartitionRecords {
                slices: vec![slice(10, 1000), slice(5_000, 4_000_000)],
                len: 4_001_000,
                bytes_out: None,
            },
            PartitionRecords::default(),
            PartitionRecords {
                slices: vec![slice(0, 1_500_000), tail.clone()],
                len: 1_500_000 + tail.len(),
                bytes_out: None,
            },
        ];
        let pieces: Vec<Bytes> = vec![
            Bytes::from_static(b"head"),
            Bytes::from_static(b"mid1"),
            Bytes::from_static(b"mid2"),
            Bytes::new(),
        ];
        let mut expected = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            expected.extend_from_slice(p);
            if let Some(r) = records.get(i) {
                for s in &r.slices {
                    match s {
                        LogSlice::File(f) => {
                            let start = f.position as usize;
                            expected.extend_from_slice(&data[start..start + f.len as usize]);
                        }
                        LogSlice::Memory(b) => expected.extend_from_slice(b),
                    }
                }
            }
        }
        (pieces, records, expected, file)
    }

    #[tokio::test]
    async fn sendfile_and_copy_paths_write_the_same_bytes() {
        let (pieces, records, expected, _file) = sample();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // Read slowly at first, so the sender meets a full socket buffer.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        let (_rd, mut wr) = server.into_split();
        let out = Outgoing::Fetch {
            pieces: pieces.clone(),
            records: records.clone(),
        };
        write_outgoing(&mut wr, out, &FetchMemory::default())
            .await
            .unwrap();
        wr.shutdown().await.unwrap();
        drop(wr);
        let got = client.await.unwrap();
        assert!(got == expected, "sendfile path wrote different bytes");

        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        // A budget smaller than one chunk: the frame goes out in many small chunks.
        let memory = FetchMemory::new(100_000);
        write_outgoing(&mut a, Outgoing::Fetch { pieces, records }, &memory)
            .await
            .unwrap();
        drop(a);
        assert!(
            reader.await.unwrap() == expected,
            "copy path wrote different bytes"
        );
        assert_eq!(memory.in_use(), 0, "the chunk went back to the budget");
    }

    #[tokio::test]
    async fn a_response_waits_while_the_budget_is_taken() {
        let (pieces, records, expected, _file) = sample();
        let memory = Arc::new(FetchMemory::new(COPY_CHUNK_BYTES));
        let write = |mut a: tokio::io::DuplexStream| {
            let (pieces, records, memory) = (pieces.clone(), records.clone(), memory.clone());
            tokio::spawn(async move {
                write_outgoing(&mut a, Outgoing::Fetch { pieces, records }, &memory)
                    .await
                    .unwrap();
            })
        };
        // The first response's reader does not read yet: its writer holds the whole budget.
        let (a1, mut b1) = tokio::io::duplex(16 * 1024);
        let w1 = write(a1);
        let (a2, mut b2) = tokio::io::duplex(16 * 1024);
        let w2 = write(a2);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(memory.in_use(), COPY_CHUNK_BYTES);
        let mut first = [0u8; 1];
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            b2.read_exact(&mut first),
        )
        .await;
        assert!(
            waited.is_err(),
            "the second response started without budget"
        );
        let r1 = tokio::spawn(async move {
            let mut got = Vec::new();
            b1.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut got2 = Vec::new();
        b2.read_to_end(&mut got2).await.unwrap();
        w1.await.unwrap();
        w2.await.unwrap();
        assert!(r1.await.unwrap() == expected);
        assert!(got2 == expected);
        assert_eq!(memory.in_use(), 0, "both chunks went back to the budget");
    }

    #[tokio::test]
    async fn a_truncated_file_fails_the_write() {
        let (pieces, mut records, _, _file) = sample();
        if let LogSlice::File(f) = &mut records[2].slices[0] {
            f.position = 5_999_000;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
        });
        let (server, _) = listener.accept().await.unwrap();
        let (_rd, mut wr) = server.into_split();
        let err = write_outgoing(
            &mut wr,
            Outgoing::Fetch { pieces, records },
            &FetchMemory::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        drop(wr);
        drop(_rd);
        client.await.unwrap();
    }
}
