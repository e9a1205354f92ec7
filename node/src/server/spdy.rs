//! SPDY/3.1 framing, as kubectl's port-forward (moby/spdystream) speaks it: control frames
//! (`SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `SETTINGS`, `PING`, `GOAWAY`, `HEADERS`,
//! `WINDOW_UPDATE`) and data frames, with header blocks compressed by zlib using the SPDY/3
//! dictionary and one compression context per direction for the whole connection.
//!
//! [`parse_frame`] and [`encode_frame`] are pure over byte buffers; [`HeaderCodec`] holds the
//! two zlib contexts.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The SPDY/3 header compression dictionary (Adler-32 `e3c6a7c2`).
pub const DICTIONARY: &[u8] = include_bytes!("spdy_dictionary.bin");

/// Data frame flag: last frame of the stream in this direction.
pub const FLAG_FIN: u8 = 0x01;

/// Header name/value pairs.
pub type Headers = Vec<(String, String)>;

/// A SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Data on a stream.
    Data {
        /// Stream id.
        stream_id: u32,
        /// Flags (`FLAG_FIN`).
        flags: u8,
        /// Payload.
        data: Bytes,
    },
    /// A new stream (headers compressed).
    SynStream {
        /// Stream id.
        stream_id: u32,
        /// Flags.
        flags: u8,
        /// Compressed header block.
        block: Bytes,
    },
    /// Reply to a new stream (headers compressed).
    SynReply {
        /// Stream id.
        stream_id: u32,
        /// Flags.
        flags: u8,
        /// Compressed header block.
        block: Bytes,
    },
    /// Abort a stream.
    RstStream {
        /// Stream id.
        stream_id: u32,
        /// Status code.
        status: u32,
    },
    /// Ping (echoed back).
    Ping(u32),
    /// End of the session.
    GoAway {
        /// Last stream processed.
        last_stream_id: u32,
        /// Status.
        status: u32,
    },
    /// Headers after the SYN (ignored by port-forward).
    Headers {
        /// Stream id.
        stream_id: u32,
        /// Compressed header block.
        block: Bytes,
    },
    /// Any other control frame (SETTINGS, WINDOW_UPDATE, ...): ignored.
    Other {
        /// Control frame type.
        kind: u16,
    },
}

/// Malformed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spdy: {0}")]
pub struct SpdyError(pub String);

/// Parse one frame from the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_frame(buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let length = (u32::from(buf[5]) << 16 | u32::from(buf[6]) << 8 | u32::from(buf[7])) as usize;
    if length > 16 << 20 {
        return Err(SpdyError(format!("frame of {length} bytes is too large")));
    }
    if buf.len() < 8 + length {
        return Ok(None);
    }
    let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let flags = buf[4];
    buf.advance(8);
    let mut body = buf.split_to(length).freeze();
    if first & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: first & 0x7fff_ffff,
            flags,
            data: body,
        }));
    }
    let version = (first >> 16) & 0x7fff;
    if version != 3 {
        return Err(SpdyError(format!("unsupported version {version}")));
    }
    let kind = (first & 0xffff) as u16;
    let need = |n: usize, body: &Bytes| {
        if body.len() < n {
            Err(SpdyError(format!("control frame {kind} too short")))
        } else {
            Ok(())
        }
    };
    Ok(Some(match kind {
        1 => {
            need(10, &body)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            body.advance(6); // associated stream id, priority, slot
            Frame::SynStream {
                stream_id,
                flags,
                block: body,
            }
        }
        2 => {
            need(4, &body)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            Frame::SynReply {
                stream_id,
                flags,
                block: body,
            }
        }
        3 => {
            need(8, &body)?;
            Frame::RstStream {
                stream_id: body.get_u32() & 0x7fff_ffff,
                status: body.get_u32(),
            }
        }
        6 => {
            need(4, &body)?;
            Frame::Ping(body.get_u32())
        }
        7 => {
            need(8, &body)?;
            Frame::GoAway {
                last_stream_id: body.get_u32() & 0x7fff_ffff,
                status: body.get_u32(),
            }
        }
        8 => {
            need(4, &body)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            Frame::Headers {
                stream_id,
                block: body,
            }
        }
        kind => Frame::Other { kind },
    }))
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]) {
    out.put_u16(0x8003);
    out.put_u16(kind);
    out.put_u8(flags);
    let len = body.len() as u32;
    out.put_u8((len >> 16) as u8);
    out.put_u16(len as u16);
    out.put_slice(body);
}

/// Encode a frame (header blocks must already be compressed).
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            out.put_u32(stream_id & 0x7fff_ffff);
            out.put_u8(*flags);
            let len = data.len() as u32;
            out.put_u8((len >> 16) as u8);
            out.put_u16(len as u16);
            out.put_slice(data);
        }
        Frame::SynStream {
            stream_id,
            flags,
            block,
        } => {
            let mut body = BytesMut::with_capacity(10 + block.len());
            body.put_u32(*stream_id);
            body.put_u32(0);
            body.put_u16(0);
            body.put_slice(block);
            control(out, 1, *flags, &body);
        }
        Frame::SynReply {
            stream_id,
            flags,
            block,
        } => {
            let mut body = BytesMut::with_capacity(4 + block.len());
            body.put_u32(*stream_id);
            body.put_slice(block);
            control(out, 2, *flags, &body);
        }
        Frame::RstStream { stream_id, status } => {
            let mut body = BytesMut::with_capacity(8);
            body.put_u32(*stream_id);
            body.put_u32(*status);
            control(out, 3, 0, &body);
        }
        Frame::Ping(id) => control(out, 6, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_stream_id,
            status,
        } => {
            let mut body = BytesMut::with_capacity(8);
            body.put_u32(*last_stream_id);
            body.put_u32(*status);
            control(out, 7, 0, &body);
        }
        Frame::Headers { stream_id, block } => {
            let mut body = BytesMut::with_capacity(4 + block.len());
            body.put_u32(*stream_id);
            body.put_slice(block);
            control(out, 8, 0, &body);
        }
        Frame::Other { .. } => {}
    }
}

/// The two zlib contexts of a connection.
pub struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
    deflate_primed: bool,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        HeaderCodec {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
            deflate_primed: false,
        }
    }
}

impl HeaderCodec {
    /// Decompress and parse a header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let (before_in, before_out) = (self.inflate.total_in(), out.len());
            match self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError(format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(SpdyError(format!("header block: {e}"))),
            }
            let consumed = (self.inflate.total_in() - before_in) as usize;
            let produced = out.len() - before_out;
            input = &input[consumed..];
            let full = out.len() == out.capacity();
            if input.is_empty() && !full {
                break;
            }
            if consumed == 0 && produced == 0 && !full {
                return Err(SpdyError("header block: no progress".to_owned()));
            }
        }
        parse_headers(&out)
    }

    /// Serialize and compress a header block.
    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Bytes, SpdyError> {
        if !self.deflate_primed {
            self.deflate
                .set_dictionary(DICTIONARY)
                .map_err(|e| SpdyError(format!("header dictionary: {e}")))?;
            self.deflate_primed = true;
        }
        let mut raw = BytesMut::new();
        raw.put_u32(headers.len() as u32);
        for (k, v) in headers {
            raw.put_u32(k.len() as u32);
            raw.put_slice(k.as_bytes());
            raw.put_u32(v.len() as u32);
            raw.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input: &[u8] = &raw;
        loop {
            let before = self.deflate.total_in();
            out.reserve(256);
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError(format!("compress headers: {e}")))?;
            let consumed = (self.deflate.total_in() - before) as usize;
            input = &input[consumed..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(Bytes::from(out))
    }
}

fn parse_headers(raw: &[u8]) -> Result<Headers, SpdyError> {
    let mut buf = raw;
    let short = || SpdyError("truncated header block".to_owned());
    if buf.len() < 4 {
        return Err(short());
    }
    let count = buf.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let mut read = |buf: &mut &[u8]| -> Result<String, SpdyError> {
            if buf.len() < 4 {
                return Err(short());
            }
            let len = buf.get_u32() as usize;
            if buf.len() < len {
                return Err(short());
            }
            let s = String::from_utf8_lossy(&buf[..len]).into_owned();
            buf.advance(len);
            Ok(s)
        };
        let name = read(&mut buf)?;
        let value = read(&mut buf)?;
        headers.push((name.to_lowercase(), value));
    }
    Ok(headers)
}

/// The value of header `name`.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
    }

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::SynStream {
                stream_id: 1,
                flags: 0,
                block: Bytes::from_static(b"xyz"),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                block: Bytes::from_static(b"abc"),
            },
            Frame::RstStream {
                stream_id: 3,
                status: 5,
            },
            Frame::Ping(7),
            Frame::GoAway {
                last_stream_id: 9,
                status: 0,
            },
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            encode_frame(f, &mut buf);
        }
        // Byte-at-a-time arrival parses the same frames.
        let mut incoming = BytesMut::new();
        let mut parsed = Vec::new();
        for byte in buf.iter() {
            incoming.put_u8(*byte);
            while let Some(f) = parse_frame(&mut incoming).expect("parse") {
                parsed.push(f);
            }
        }
        assert_eq!(parsed, frames);
    }

    #[test]
    fn header_blocks_share_one_context_per_direction() {
        let mut client = HeaderCodec::default();
        let mut server = HeaderCodec::default();
        for i in 0..3 {
            let headers = vec![
                ("streamtype".to_owned(), "data".to_owned()),
                ("port".to_owned(), "8080".to_owned()),
                ("requestid".to_owned(), i.to_string()),
            ];
            let block = client.encode(&headers).expect("encode");
            let decoded = server.decode(&block).expect("decode");
            assert_eq!(decoded, headers);
            assert_eq!(header(&decoded, "requestid"), Some(i.to_string().as_str()));
        }
        let empty = server.encode(&[]).expect("empty");
        assert!(client.decode(&empty).expect("decode empty").is_empty());
    }
}
