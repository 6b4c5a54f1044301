//! Little helpers to read and write C fields in native byte order.
//!
//! SWUpdate's IPC is a raw `struct` sent over a local socket, so every
//! integer is in the host's byte order and every string is a fixed-size,
//! NUL-padded `char` array. These helpers never panic on the decode side:
//! callers check the buffer length once, up front.

use crate::error::EncodeError;

pub(crate) const fn align_up(offset: usize, align: usize) -> usize {
    offset.div_ceil(align) * align
}

pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_ne_bytes(b)
}

pub(crate) fn get_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_ne_bytes(b)
}

pub(crate) fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(b)
}

pub(crate) fn get_usize(buf: &[u8], at: usize) -> usize {
    let mut b = [0u8; size_of::<usize>()];
    b.copy_from_slice(&buf[at..at + size_of::<usize>()]);
    usize::from_ne_bytes(b)
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

pub(crate) fn put_i32(buf: &mut [u8], at: usize, v: i32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

pub(crate) fn put_usize(buf: &mut [u8], at: usize, v: usize) {
    buf[at..at + size_of::<usize>()].copy_from_slice(&v.to_ne_bytes());
}

/// Reads a C string from a fixed `char[len]` field: up to the first NUL, or
/// the whole field if SWUpdate filled it completely. Invalid UTF-8 is
/// replaced, since these are log texts and names, not data.
pub(crate) fn get_cstr(buf: &[u8], at: usize, len: usize) -> String {
    let field = &buf[at..at + len];
    let end = field.iter().position(|&b| b == 0).unwrap_or(len);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Writes `s` into a fixed `char[len]` field, keeping room for the NUL that
/// SWUpdate's `strcmp`/`strlen` rely on.
pub(crate) fn put_cstr(
    buf: &mut [u8],
    at: usize,
    len: usize,
    s: &str,
    field: &'static str,
) -> Result<(), EncodeError> {
    let bytes = s.as_bytes();
    if bytes.contains(&0) {
        return Err(EncodeError::InteriorNul { field });
    }
    if bytes.len() >= len {
        return Err(EncodeError::FieldTooLong {
            field,
            max: len - 1,
            len: bytes.len(),
        });
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
    // The rest of the field is already zero: encoders start from a zeroed buffer.
    Ok(())
}
