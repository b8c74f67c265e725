//! Reading a window group's saved bytes back: a cursor whose every read is checked, so a
//! truncated or corrupt state (bytes from disk are never trusted) is a [`CorruptState`] error
//! naming what did not fit, never a panic or an allocation sized by a corrupt length.

use super::values::ValueError;

/// Saved window state that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum CorruptState {
    #[error("the saved {what} ends after {have} bytes where {need} were expected")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{0} bytes are left over after the saved window state")]
    Trailing(usize),
    #[error("invalid saved {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("a saved value does not fit its type")]
    Value(#[from] ValueError),
}

/// A cursor over saved bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The next `n` bytes (of the named part of the state).
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CorruptState> {
        if self.bytes.len() < n {
            return Err(CorruptState::Truncated {
                what,
                need: n,
                have: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CorruptState> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CorruptState> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, CorruptState> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, CorruptState> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u32 length, then that many bytes.
    pub fn blob(&mut self, what: &'static str) -> Result<&'a [u8], CorruptState> {
        let len = u32::from_le_bytes(self.array(what)?);
        self.take(len as usize, what)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Every byte was read.
    pub fn finish(self) -> Result<(), CorruptState> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(CorruptState::Trailing(n)),
        }
    }
}

/// An error with its causes, `: `-separated (for errors that travel as text).
pub fn described(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Appends `bytes` with a u32 length ([`Reader::blob`] reads it back).
pub fn write_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    // A group's value larger than 4 GiB cannot be held within any state limit; saturating
    // keeps the writer total, and the reader then reports the entry as corrupt.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_past_the_end_is_an_error_naming_the_part() {
        let mut out = Vec::new();
        write_blob(&mut out, b"abc");
        out.push(7);
        let mut r = Reader::new(&out);
        assert_eq!(r.blob("value").unwrap(), b"abc");
        assert!(matches!(
            r.i64("time"),
            Err(CorruptState::Truncated {
                what: "time",
                need: 8,
                have: 1
            })
        ));
        assert_eq!(r.u8("flag").unwrap(), 7);
        r.finish().unwrap();
        // A length beyond the bytes there.
        let mut r = Reader::new(&[255, 255, 255, 255, 1]);
        assert!(matches!(
            r.blob("value"),
            Err(CorruptState::Truncated { have: 1, .. })
        ));
        assert!(matches!(
            Reader::new(&[1, 2]).finish(),
            Err(CorruptState::Trailing(2))
        ));
    }
}
