//! Just enough zlib for SPDY header blocks: a streaming inflater (stored, fixed and dynamic
//! Huffman blocks, preset dictionary, history kept across header blocks) and a deflater that
//! writes stored blocks (valid zlib any inflater reads; header blocks are tiny, so
//! compression would gain nothing).
//!
//! SPDY compresses every header block with one zlib stream per direction, ending each block
//! with a sync flush, so each block's bytes hold whole deflate blocks ending on a byte
//! boundary: [`Inflater::inflate`] decodes them and keeps the 32 KiB window for the next one.

/// Malformed zlib data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zlib: {0}")]
pub struct ZlibError(pub String);

fn err<T>(message: &str) -> Result<T, ZlibError> {
    Err(ZlibError(message.to_owned()))
}

const WINDOW: usize = 32 * 1024;

/// Adler-32 checksum (identifies preset dictionaries).
pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    b << 16 | a
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    bit: u32,
    nbits: u32,
}

impl Bits<'_> {
    fn need(&mut self, n: u32) -> Result<(), ZlibError> {
        while self.nbits < n {
            let Some(&byte) = self.data.get(self.pos) else {
                return err("unexpected end of data");
            };
            self.pos += 1;
            self.bit |= u32::from(byte) << self.nbits;
            self.nbits += 8;
        }
        Ok(())
    }

    fn bits(&mut self, n: u32) -> Result<u32, ZlibError> {
        if n == 0 {
            return Ok(0);
        }
        self.need(n)?;
        let value = self.bit & ((1u32 << n) - 1);
        self.bit >>= n;
        self.nbits -= n;
        Ok(value)
    }

    fn align(&mut self) {
        self.bit = 0;
        self.nbits = 0;
    }
}

/// Canonical Huffman decoding table (counts per length, symbols in code order).
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, ZlibError> {
        let mut counts = [0u16; 16];
        for &l in lengths {
            counts[l as usize] += 1;
        }
        counts[0] = 0;
        let mut offsets = [0u16; 16];
        for i in 1..16 {
            offsets[i] = offsets[i - 1] + counts[i - 1];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbols[offsets[l as usize] as usize] = symbol as u16;
                offsets[l as usize] += 1;
            }
        }
        Ok(Huffman { counts, symbols })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, ZlibError> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.bits(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - count < first {
                return Ok(self.symbols[(index + (code - first)) as usize]);
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        err("invalid Huffman code")
    }
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// A streaming zlib inflater with a preset dictionary.
pub struct Inflater {
    dictionary: Vec<u8>,
    header_done: bool,
    history: Vec<u8>,
    finished: bool,
}

impl Inflater {
    /// An inflater that accepts `dictionary` when the stream asks for it.
    pub fn new(dictionary: &[u8]) -> Self {
        Inflater {
            dictionary: dictionary.to_vec(),
            header_done: false,
            history: Vec::new(),
            finished: false,
        }
    }

    /// Inflate the next chunk (whole deflate blocks, as after a sync flush).
    pub fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut bits = Bits {
            data: input,
            pos: 0,
            bit: 0,
            nbits: 0,
        };
        if !self.header_done {
            let cmf = bits.bits(8)?;
            let flg = bits.bits(8)?;
            if cmf & 0x0f != 8 || (cmf << 8 | flg) % 31 != 0 {
                return err("bad zlib header");
            }
            if flg & 0x20 != 0 {
                let mut id = 0u32;
                for _ in 0..4 {
                    id = id << 8 | bits.bits(8)?;
                }
                if id != adler32(&self.dictionary) {
                    return err("unknown preset dictionary");
                }
                self.history = self.dictionary.clone();
            }
            self.header_done = true;
        }
        let start = self.history.len();
        while !self.finished && (bits.pos < input.len() || bits.nbits >= 3) {
            let last = bits.bits(1)? == 1;
            match bits.bits(2)? {
                0 => {
                    bits.align();
                    let p = bits.pos;
                    if input.len() < p + 4 {
                        return err("truncated stored block");
                    }
                    let len = usize::from(u16::from_le_bytes([input[p], input[p + 1]]));
                    let nlen = u16::from_le_bytes([input[p + 2], input[p + 3]]);
                    if nlen != !(len as u16) {
                        return err("stored block length mismatch");
                    }
                    if input.len() < p + 4 + len {
                        return err("truncated stored block");
                    }
                    self.history.extend_from_slice(&input[p + 4..p + 4 + len]);
                    bits.pos = p + 4 + len;
                }
                1 => {
                    let mut lengths = [0u8; 288];
                    lengths[..144].fill(8);
                    lengths[144..256].fill(9);
                    lengths[256..280].fill(7);
                    lengths[280..].fill(8);
                    let lit = Huffman::new(&lengths)?;
                    let dist = Huffman::new(&[5u8; 30])?;
                    self.codes(&mut bits, &lit, &dist)?;
                }
                2 => {
                    let (lit, dist) = dynamic_tables(&mut bits)?;
                    self.codes(&mut bits, &lit, &dist)?;
                }
                _ => return err("invalid block type"),
            }
            if last {
                self.finished = true;
            }
        }
        let out = self.history[start..].to_vec();
        if self.history.len() > 2 * WINDOW {
            let cut = self.history.len() - WINDOW;
            self.history.drain(..cut);
        }
        Ok(out)
    }

    fn codes(
        &mut self,
        bits: &mut Bits<'_>,
        lit: &Huffman,
        dist: &Huffman,
    ) -> Result<(), ZlibError> {
        loop {
            let symbol = lit.decode(bits)?;
            match symbol {
                0..=255 => self.history.push(symbol as u8),
                256 => return Ok(()),
                257..=285 => {
                    let i = usize::from(symbol - 257);
                    let len = usize::from(LENGTH_BASE[i])
                        + bits.bits(u32::from(LENGTH_EXTRA[i]))? as usize;
                    let d = usize::from(dist.decode(bits)?);
                    if d >= 30 {
                        return err("invalid distance symbol");
                    }
                    let distance =
                        usize::from(DIST_BASE[d]) + bits.bits(u32::from(DIST_EXTRA[d]))? as usize;
                    if distance > self.history.len() {
                        return err("distance too far back");
                    }
                    let from = self.history.len() - distance;
                    for k in 0..len {
                        let byte = self.history[from + k];
                        self.history.push(byte);
                    }
                }
                _ => return err("invalid literal/length symbol"),
            }
        }
    }
}

fn dynamic_tables(bits: &mut Bits<'_>) -> Result<(Huffman, Huffman), ZlibError> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let nlen = bits.bits(5)? as usize + 257;
    let ndist = bits.bits(5)? as usize + 1;
    let ncode = bits.bits(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return err("bad code counts");
    }
    let mut code_lengths = [0u8; 19];
    for &index in ORDER.iter().take(ncode) {
        code_lengths[index] = bits.bits(3)? as u8;
    }
    let code = Huffman::new(&code_lengths)?;
    let mut lengths = vec![0u8; nlen + ndist];
    let mut i = 0;
    while i < nlen + ndist {
        let symbol = code.decode(bits)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                if i == 0 {
                    return err("repeat with no previous length");
                }
                (lengths[i - 1], 3 + bits.bits(2)? as usize)
            }
            17 => (0, 3 + bits.bits(3)? as usize),
            18 => (0, 11 + bits.bits(7)? as usize),
            _ => return err("invalid code length symbol"),
        };
        if i + repeat > nlen + ndist {
            return err("too many code lengths");
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    Ok((
        Huffman::new(&lengths[..nlen])?,
        Huffman::new(&lengths[nlen..])?,
    ))
}

/// A zlib stream of stored blocks, each chunk sync-flushed.
pub struct Deflater {
    dictionary_id: Option<u32>,
    started: bool,
}

impl Deflater {
    /// A deflater announcing `dictionary` (it is not used for matches, only declared, as
    /// the SPDY peer expects a stream that names it).
    pub fn new(dictionary: &[u8]) -> Self {
        Deflater {
            dictionary_id: Some(adler32(dictionary)),
            started: false,
        }
    }

    /// Encode `data` as the next sync-flushed chunk of the stream.
    pub fn deflate(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 16);
        if !self.started {
            self.started = true;
            let cmf = 0x78u8;
            let mut flg: u8 = if self.dictionary_id.is_some() {
                0x20
            } else {
                0
            };
            let check = (u16::from(cmf) << 8 | u16::from(flg)) % 31;
            if check != 0 {
                flg += (31 - check) as u8;
            }
            out.extend_from_slice(&[cmf, flg]);
            if let Some(id) = self.dictionary_id {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        for chunk in data.chunks(65535) {
            let len = chunk.len() as u16;
            out.push(0); // not last, stored
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // The sync flush marker: an empty stored block.
        out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_round_trip_with_dictionary_and_history() {
        let dict = b"streamtypeportrequestid";
        let mut d = Deflater::new(dict);
        let mut i = Inflater::new(dict);
        for message in [&b"hello"[..], b"", b"world, again and again"] {
            assert_eq!(i.inflate(&d.deflate(message)).expect("inflate"), message);
        }
    }

    #[test]
    fn inflates_fixed_huffman_with_back_references() {
        // zlib.compress(b"abcabcabcabc") (fixed Huffman with a back-reference).
        let data = [
            0x78, 0x9c, 0x4b, 0x4c, 0x4a, 0x4e, 0x84, 0x21, 0x00, 0x1d, 0xe0, 0x04, 0x99,
        ];
        let mut i = Inflater::new(&[]);
        assert_eq!(i.inflate(&data).expect("inflate"), b"abcabcabcabc");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Inflater::new(&[]).inflate(&[0x12, 0x34]).is_err());
        let mut with_dict = Deflater::new(b"one");
        assert!(
            Inflater::new(b"two")
                .inflate(&with_dict.deflate(b"x"))
                .is_err()
        );
    }
}
