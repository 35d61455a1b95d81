//! Reading ONNX's protobuf encoding field by field, without a protobuf library: the one reader
//! behind the model walks of `onnx_checks` (external data) and `graph_interface` (declared inputs
//! and outputs).

/// Why a graph's bytes could not be read: the offset and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a readable ONNX model (byte {offset}: {reason})")]
pub struct OnnxReadError {
    /// Byte offset into the file where reading failed.
    pub offset: usize,
    /// What was expected there.
    pub reason: &'static str,
}

/// Nested messages deeper than this are refused (a graph of graphs of graphs … is not a prior).
pub(crate) const MAX_DEPTH: usize = 64;

/// One protobuf field of a message.
pub(crate) struct Field {
    /// The field number.
    pub number: u64,
    /// What the field holds.
    pub value: FieldValue,
}

/// A field's value, as far as ONNX's messages need it.
pub(crate) enum FieldValue {
    /// A varint (wire type 0): enums, integers, booleans.
    Varint(u64),
    /// A fixed-width number (wire types 1 and 5), skipped.
    Fixed,
    /// A length-delimited payload (wire type 2): the byte range of a message, string or packed
    /// array within the message being read.
    Bytes(usize, usize),
}

/// The fields of one message, in order; `base` is the message's offset in the file, for errors.
pub(crate) struct Fields<'a> {
    /// The message's bytes.
    bytes: &'a [u8],
    /// Where the next field starts.
    pos: usize,
    /// Offset of `bytes` in the file.
    base: usize,
}

impl<'a> Fields<'a> {
    /// The fields of the message `bytes`, which starts at byte `base` of the file.
    pub fn new(bytes: &'a [u8], base: usize) -> Self {
        Fields { bytes, pos: 0, base }
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, OnnxReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let field = next_field(self.bytes, &mut self.pos, self.base);
        if field.is_err() {
            self.pos = self.bytes.len();
        }
        Some(field)
    }
}

/// Reads one field's tag and its value or delimits it.
fn next_field(bytes: &[u8], pos: &mut usize, base: usize) -> Result<Field, OnnxReadError> {
    let at = base + *pos;
    let tag = varint(bytes, pos).ok_or(OnnxReadError {
        offset: at,
        reason: "a truncated field tag",
    })?;
    let number = tag >> 3;
    let truncated = OnnxReadError {
        offset: at,
        reason: "a field running past the end of its message",
    };
    let value = match tag & 7 {
        0 => FieldValue::Varint(varint(bytes, pos).ok_or(truncated)?),
        1 | 5 => {
            let width = if tag & 7 == 1 { 8 } else { 4 };
            *pos = pos
                .checked_add(width)
                .filter(|&p| p <= bytes.len())
                .ok_or(truncated)?;
            FieldValue::Fixed
        }
        2 => {
            let len = varint(bytes, pos).ok_or(truncated.clone())?;
            let start = *pos;
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| start.checked_add(len))
                .filter(|&end| end <= bytes.len())
                .ok_or(truncated)?;
            *pos = end;
            FieldValue::Bytes(start, end)
        }
        _ => {
            return Err(OnnxReadError {
                offset: at,
                reason: "a protobuf wire type ONNX does not use",
            })
        }
    };
    if number == 0 {
        return Err(OnnxReadError {
            offset: at,
            reason: "field number 0",
        });
    }
    Ok(Field { number, value })
}

/// A base-128 varint at `pos` (advanced past it), or None when truncated or longer than 64 bits.
fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Protobuf encoding helpers for tests that build models by hand.
#[cfg(test)]
pub(crate) mod encode {
    /// `v` as a base-128 varint.
    pub fn varint_bytes(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// A length-delimited field.
    pub fn field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = varint_bytes(number << 3 | 2);
        out.extend(varint_bytes(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    /// A varint field.
    pub fn varint_field(number: u64, value: u64) -> Vec<u8> {
        let mut out = varint_bytes(number << 3);
        out.extend(varint_bytes(value));
        out
    }

    /// A model holding `graph` (ir_version 8).
    pub fn model(graph: &[u8]) -> Vec<u8> {
        let mut out = varint_field(1, 8);
        out.extend(field(7, graph));
        out
    }
}
