//! A small explicit binary codec for commands and images.
//!
//! Integers are big-endian; strings and lists are prefixed with a `u32` length. Every length is
//! checked against the bytes that remain before anything is allocated, so hostile or corrupt input
//! yields a [`DecodeError`], never a panic or a huge allocation.

use std::collections::BTreeMap;

use uuid::Uuid;

/// Why bytes from disk or the network could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("input truncated at byte {at}: {needed} more bytes needed")]
    Truncated {
        /// Position where the missing value starts.
        at: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A command tag this build does not know (written by a newer version, or corrupt).
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    /// A known record kind in a version this build cannot read.
    #[error("unsupported version {version} of {kind}")]
    UnsupportedVersion {
        /// What was being decoded.
        kind: &'static str,
        /// The version found in the input.
        version: u8,
    },
    /// A string field was not UTF-8.
    #[error("invalid UTF-8 in a string field")]
    Utf8(#[source] std::str::Utf8Error),
    /// Bytes were left over after a complete value.
    #[error("{0} trailing bytes after a complete value")]
    Trailing(usize),
    /// The input does not start with the expected magic bytes.
    #[error("bad magic: not a metadata image")]
    BadMagic,
    /// The stored checksum does not match the content.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Checksum found in the input.
        stored: u32,
        /// Checksum of the bytes actually read.
        computed: u32,
    },
    /// A field holds a value outside its domain.
    #[error("invalid value {value} for {field}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
}

/// Appends encoded values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.buf
    }
    pub(crate) fn bytes_written(&self) -> &[u8] {
        &self.buf
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn uuid(&mut self, v: Uuid) {
        self.buf.extend_from_slice(v.as_bytes());
    }
    /// Lengths beyond `u32::MAX` cannot occur for metadata; saturating keeps encode infallible
    /// and such a value would then fail to decode rather than silently wrap.
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(crate) fn str(&mut self, v: &str) {
        self.len(v.len());
        self.buf.extend_from_slice(v.as_bytes());
    }
    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    pub(crate) fn opt_i32(&mut self, v: Option<i32>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.i32(x);
            }
        }
    }
    pub(crate) fn i32s(&mut self, v: &[i32]) {
        self.len(v.len());
        for x in v {
            self.i32(*x);
        }
    }
    pub(crate) fn str_map(&mut self, m: &BTreeMap<String, String>) {
        self.len(m.len());
        for (k, v) in m {
            self.str(k);
            self.str(v);
        }
    }
}

/// Reads encoded values from a slice, checking every bound.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::Invalid {
                field: "bool",
                value: u64::from(v),
            }),
        }
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub(crate) fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.array()?))
    }
    /// A list length, rejected early when even `min_item` bytes per item cannot fit.
    pub(crate) fn len(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        let needed = n.saturating_mul(min_item.max(1));
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                at,
                needed: needed - self.remaining(),
            });
        }
        Ok(n)
    }
    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.len(1)?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(DecodeError::Utf8)
    }
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }
    pub(crate) fn opt_i32(&mut self) -> Result<Option<i32>, DecodeError> {
        Ok(if self.bool()? {
            Some(self.i32()?)
        } else {
            None
        })
    }
    pub(crate) fn i32s(&mut self) -> Result<Vec<i32>, DecodeError> {
        let n = self.len(4)?;
        (0..n).map(|_| self.i32()).collect()
    }
    pub(crate) fn str_map(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let n = self.len(8)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.str()?;
            let v = self.str()?;
            m.insert(k, v);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_length_prefix_is_rejected_before_allocating() {
        let mut w = Writer::default();
        w.u32(u32::MAX);
        let bytes = w.into_inner();
        let err = Reader::new(&bytes).i32s().unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { at: 0, .. }), "{err}");
    }

    #[test]
    fn invalid_bool_and_utf8_are_typed_errors() {
        assert_eq!(
            Reader::new(&[2]).bool(),
            Err(DecodeError::Invalid {
                field: "bool",
                value: 2
            })
        );
        let mut w = Writer::default();
        w.u32(2);
        w.u8(0xff);
        w.u8(0xfe);
        let bytes = w.into_inner();
        assert!(matches!(
            Reader::new(&bytes).str(),
            Err(DecodeError::Utf8(_))
        ));
    }
}
