//! sha256 digests: hashing readers and writers, and checks that a string is a digest we accept.

use std::io::{self, Read, Write};

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

/// The algorithm prefix of every digest the store writes.
pub const SHA256: &str = "sha256";

/// The sha256 digest of a byte slice, as an OCI digest.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    from_hex(&hex::encode(Sha256::digest(bytes)))
}

/// An OCI digest from a lowercase sha256 hex string produced by this crate.
pub fn from_hex(hex: &str) -> Digest {
    format!("{SHA256}:{hex}")
        .parse()
        .expect("a sha256 hex string is a valid digest")
}

/// The hex part of a sha256 digest, or `None` for another algorithm.
pub fn sha256_hex(digest: &Digest) -> Option<&str> {
    let s = digest.as_ref();
    s.strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parses `sha256:<64 hex>`; anything else is `None`.
pub fn parse_sha256(s: &str) -> Option<Digest> {
    let d: Digest = s.parse().ok()?;
    sha256_hex(&d)?;
    Some(d)
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and byte count of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (from_hex(&hex::encode(self.hasher.finalize())), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (
            from_hex(&hex::encode(self.hasher.finalize())),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            sha256_digest(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut r = HashingReader::new(&b""[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish().0, sha256_digest(b""));
    }

    #[test]
    fn parse_rejects_other_algorithms_and_bad_hex() {
        assert!(parse_sha256("sha512:abcd").is_none());
        assert!(parse_sha256("sha256:xyz").is_none());
        assert!(parse_sha256(sha256_digest(b"a").as_ref()).is_some());
    }
}
