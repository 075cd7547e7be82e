//! Buffered connections and body relaying: a body goes from one side's read buffer to the
//! other side's socket as it arrives, framed as its head said (length, chunked, until close),
//! with what is queued for the other side (the rewritten head) sent in the same write.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::head::Framing;

const READ_CHUNK: usize = 16 * 1024;
/// Queued output is written once it reaches this size, even without a pending read.
const WRITE_BATCH: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// A TCP connection with its read buffer (bytes received but not yet consumed).
#[derive(Debug)]
pub struct Peer {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

impl Peer {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        Peer {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Reads what is available into the buffer; `Ok(0)` at end of stream.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        self.stream.read_buf(&mut self.buf).await
    }
}

/// Which side a relay failed on.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the body from its sender failed or ended early.
    #[error("reading the body: {0}")]
    Source(std::io::Error),
    /// Writing to the receiver failed.
    #[error("writing the body: {0}")]
    Sink(std::io::Error),
    /// The chunked encoding was malformed.
    #[error("malformed chunked body")]
    Malformed,
}

/// Moves a body framed by `framing` from `src` to `dst`. `out` holds bytes already queued for
/// `dst` (typically the head); it is empty when this returns Ok.
pub async fn relay(
    src: &mut Peer,
    dst: &mut TcpStream,
    out: &mut Vec<u8>,
    framing: Framing,
) -> Result<(), RelayError> {
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => copy_exact(src, dst, out, n).await?,
        Framing::Chunked => copy_chunked(src, dst, out).await?,
        Framing::UntilClose => loop {
            out.extend_from_slice(&src.buf);
            src.buf.clear();
            flush(dst, out).await?;
            if refill(src).await? == 0 {
                break;
            }
        },
    }
    flush(dst, out).await
}

async fn flush(dst: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), RelayError> {
    if !out.is_empty() {
        dst.write_all(out).await.map_err(RelayError::Sink)?;
        out.clear();
    }
    Ok(())
}

async fn refill(src: &mut Peer) -> Result<usize, RelayError> {
    src.fill().await.map_err(RelayError::Source)
}

/// Refills `src` after flushing `out` (never block on a read with output pending); end of
/// stream here is an error.
async fn more(src: &mut Peer, dst: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), RelayError> {
    flush(dst, out).await?;
    match refill(src).await? {
        0 => Err(RelayError::Source(std::io::ErrorKind::UnexpectedEof.into())),
        _ => Ok(()),
    }
}

async fn copy_exact(
    src: &mut Peer,
    dst: &mut TcpStream,
    out: &mut Vec<u8>,
    mut remaining: u64,
) -> Result<(), RelayError> {
    loop {
        let take = remaining.min(src.buf.len() as u64) as usize;
        out.extend_from_slice(&src.buf[..take]);
        src.buf.advance(take);
        remaining -= take as u64;
        if remaining == 0 {
            return Ok(());
        }
        if out.len() >= WRITE_BATCH {
            flush(dst, out).await?;
        }
        more(src, dst, out).await?;
    }
}

/// The length of the line at the start of `src`'s buffer (without CRLF), reading as needed.
async fn line(src: &mut Peer, dst: &mut TcpStream, out: &mut Vec<u8>) -> Result<usize, RelayError> {
    loop {
        if let Some(i) = src.buf.windows(2).position(|w| w == b"\r\n") {
            return Ok(i);
        }
        if src.buf.len() > MAX_LINE {
            return Err(RelayError::Malformed);
        }
        more(src, dst, out).await?;
    }
}

fn chunk_size(line: &[u8]) -> Result<u64, RelayError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(RelayError::Malformed);
    }
    let text = std::str::from_utf8(digits).map_err(|_| RelayError::Malformed)?;
    u64::from_str_radix(text, 16).map_err(|_| RelayError::Malformed)
}

async fn copy_chunked(
    src: &mut Peer,
    dst: &mut TcpStream,
    out: &mut Vec<u8>,
) -> Result<(), RelayError> {
    loop {
        let n = line(src, dst, out).await?;
        let size = chunk_size(&src.buf[..n])?;
        copy_exact(src, dst, out, n as u64 + 2).await?;
        if size == 0 {
            // Trailer fields, then the empty line that ends the body.
            loop {
                let n = line(src, dst, out).await?;
                copy_exact(src, dst, out, n as u64 + 2).await?;
                if n == 0 {
                    return Ok(());
                }
            }
        }
        copy_exact(src, dst, out, size).await?;
        let n = line(src, dst, out).await?;
        if n != 0 {
            return Err(RelayError::Malformed);
        }
        copy_exact(src, dst, out, 2).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Relays `input` (sent in pieces of `step` bytes) framed as `framing`; returns what the
    /// receiver got and what stayed in the source buffer.
    async fn run(
        input: &[u8],
        step: usize,
        framing: Framing,
    ) -> (Result<Vec<u8>, String>, Vec<u8>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for piece in input.chunks(step) {
                s.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let (a, _) = l.accept().await.unwrap();
        let mut src = Peer::new(a);
        let sink_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink_addr = sink_l.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = sink_l.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut dst = TcpStream::connect(sink_addr).await.unwrap();
        let mut out = b"HEAD|".to_vec();
        let r = relay(&mut src, &mut dst, &mut out, framing).await;
        writer.await.unwrap();
        drop(dst);
        let got = reader.await.unwrap();
        let left = src.buf.to_vec();
        (r.map(|()| got).map_err(|e| e.to_string()), left)
    }

    #[tokio::test]
    async fn length_bodies_stop_at_their_length() {
        for step in [1, 3, 1000] {
            let (got, left) = run(b"hello worldNEXT", step, Framing::Length(11)).await;
            assert_eq!(got.unwrap(), b"HEAD|hello world");
            assert!(b"NEXT".starts_with(&left), "{left:?}");
        }
    }

    #[tokio::test]
    async fn chunked_bodies_pass_through_with_trailers() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 4, 1000] {
            let mut input = body.to_vec();
            input.extend_from_slice(b"GET");
            let (got, left) = run(&input, step, Framing::Chunked).await;
            let mut want = b"HEAD|".to_vec();
            want.extend_from_slice(body);
            assert_eq!(got.unwrap(), want);
            assert!(b"GET".starts_with(&left), "{left:?}");
        }
    }

    #[tokio::test]
    async fn malformed_or_truncated_bodies_fail() {
        let (got, _) = run(b"zz\r\nhello\r\n0\r\n\r\n", 100, Framing::Chunked).await;
        assert!(got.unwrap_err().contains("malformed"));
        let (got, _) = run(b"5\r\nhelloXX0\r\n\r\n", 100, Framing::Chunked).await;
        assert!(got.is_err());
        let (got, _) = run(b"short", 100, Framing::Length(10)).await;
        assert!(got.unwrap_err().contains("reading"));
    }

    #[tokio::test]
    async fn until_close_takes_everything() {
        let (got, _) = run(b"all of it", 2, Framing::UntilClose).await;
        assert_eq!(got.unwrap(), b"HEAD|all of it");
    }
}
