//! FNV-1a, 64 bit: a stable content hash, for detecting hand edits of
//! migrations (`generated`) and for making long object names unique
//! (`render::names`). Not a security measure: refinery checksums applied
//! files. A leaf: it imports nothing of pgretain. No I/O here.

/// The FNV-1a hash of `bytes`, as 16 hex digits.
pub fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
