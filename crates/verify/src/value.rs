//! Unique, self-checking record values.
//!
//! Every value a writer sends is `(writer_id << 40) | seq`: unique across writers (24-bit ids)
//! and within one (40-bit sequence). The record payload carries the value and a CRC-32C over
//! everything before the CRC, so a record that comes back altered anywhere between the producer
//! and the consumer (client, wire, broker, disk, replication) is detected as corrupt rather than
//! silently counted as some other value.
//!
//! Payload layout (big-endian):
//!
//! ```text
//! magic "GVv1" [4] | value u64 | filler_len u16 | filler [filler_len] | crc32c u32
//! ```
//!
//! The filler is a deterministic function of the value (so a payload can be made any size for
//! throughput runs) and is covered by the CRC.

use crate::error::PayloadError;

/// Bits reserved for the per-writer sequence number.
pub const SEQ_BITS: u32 = 40;
/// The largest writer id (24 bits).
pub const MAX_WRITER: u32 = (1 << (64 - SEQ_BITS)) - 1;
/// The largest per-writer sequence number.
pub const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

const MAGIC: &[u8; 4] = b"GVv1";
/// magic + value + filler length + crc.
const FIXED_LEN: usize = 4 + 8 + 2 + 4;

/// The value writer `writer` sends as its `seq`-th record. `None` if either part is out of range.
pub fn make_value(writer: u32, seq: u64) -> Option<u64> {
    (writer <= MAX_WRITER && seq <= MAX_SEQ).then(|| (u64::from(writer) << SEQ_BITS) | seq)
}

/// The writer id of a value.
pub fn writer_of(value: u64) -> u32 {
    // The shift leaves at most 24 bits, so the conversion never truncates.
    u32::try_from(value >> SEQ_BITS).unwrap_or(MAX_WRITER)
}

/// The per-writer sequence number of a value.
pub fn seq_of(value: u64) -> u64 {
    value & MAX_SEQ
}

/// The record payload for `value`, padded with `filler_len` deterministic bytes.
pub fn encode_payload(value: u64, filler_len: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN + usize::from(filler_len));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&value.to_be_bytes());
    out.extend_from_slice(&filler_len.to_be_bytes());
    out.extend((0..filler_len).map(|i| filler_byte(value, i)));
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The value inside a payload written by [`encode_payload`], after checking its framing and CRC.
pub fn decode_payload(payload: &[u8]) -> Result<u64, PayloadError> {
    if payload.len() < FIXED_LEN {
        return Err(PayloadError::Short { len: payload.len() });
    }
    let (body, crc) = payload.split_at(payload.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(PayloadError::Crc { stored, computed });
    }
    if &body[..4] != MAGIC {
        return Err(PayloadError::Magic);
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&body[4..12]);
    let value = u64::from_be_bytes(v);
    let filler_len = usize::from(u16::from_be_bytes([body[12], body[13]]));
    if body.len() != FIXED_LEN - 4 + filler_len {
        return Err(PayloadError::Length {
            declared: filler_len,
            actual: body.len() - (FIXED_LEN - 4),
        });
    }
    Ok(value)
}

fn filler_byte(value: u64, i: u16) -> u8 {
    // Any deterministic pattern will do; this one differs between neighbouring values.
    (value.rotate_left(u32::from(i % 64)) as u8) ^ (i as u8)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn value_round_trips_and_rejects_out_of_range() {
        let v = make_value(7, 12345).unwrap();
        assert_eq!((writer_of(v), seq_of(v)), (7, 12345));
        assert_eq!(make_value(MAX_WRITER + 1, 0), None);
        assert_eq!(make_value(0, MAX_SEQ + 1), None);
        let top = make_value(MAX_WRITER, MAX_SEQ).unwrap();
        assert_eq!((writer_of(top), seq_of(top)), (MAX_WRITER, MAX_SEQ));
    }

    #[test]
    fn payload_round_trips_and_every_bit_flip_is_caught() {
        for filler in [0u16, 1, 100] {
            let p = encode_payload(0xABCDEF, filler);
            assert_eq!(decode_payload(&p).unwrap(), 0xABCDEF);
            for byte in 0..p.len() {
                for bit in 0..8 {
                    let mut q = p.clone();
                    q[byte] ^= 1 << bit;
                    assert!(decode_payload(&q).is_err(), "flip {byte}:{bit} undetected");
                }
            }
            assert!(decode_payload(&p[..p.len() - 1]).is_err());
        }
        assert!(matches!(
            decode_payload(b"short"),
            Err(PayloadError::Short { len: 5 })
        ));
    }
}
