//! SPDY/3.1 framing, as kubectl's port-forward (moby/spdystream) speaks it: control frames
//! (`SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `SETTINGS`, `PING`, `GOAWAY`, `HEADERS`,
//! `WINDOW_UPDATE`) and data frames, with header blocks compressed by zlib using the SPDY/3
//! dictionary and one compression context per direction for the whole connection.
//!
//! [`parse_frame`] and [`encode_frame`] are pure over byte buffers; [`HeaderCodec`] holds the
//! two zlib contexts (`flate2` over the pure-Rust `zlib-rs` backend, which supports preset
//! dictionaries).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

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

/// What a connection's writer task is asked to send.
pub enum Outgoing {
    /// A `SYN_REPLY` with empty headers, compressed by the writer's own header context.
    Reply(u32),
    /// Any other frame.
    Frame(Frame),
}

/// A connection's writer: encode and write `frames` until `GOAWAY` or their end, then shut
/// the write side. It owns the outgoing header context, so header blocks are compressed in
/// the order they are written. `protocol` names the connection's protocol in logs.
pub async fn write_frames<W, S>(writer: W, frames: S, protocol: &'static str)
where
    W: AsyncWrite,
    S: futures::Stream<Item = Outgoing>,
{
    let mut writer = std::pin::pin!(writer);
    let mut frames = std::pin::pin!(frames);
    let mut codec = HeaderCodec::default();
    let mut buf = BytesMut::new();
    while let Some(out) = frames.next().await {
        let frame = match out {
            Outgoing::Frame(frame) => frame,
            Outgoing::Reply(stream_id) => match codec.encode(&[]) {
                Ok(block) => Frame::SynReply {
                    stream_id,
                    flags: 0,
                    block,
                },
                Err(error) => {
                    tracing::debug!(%error, "{protocol}: cannot encode a reply");
                    break;
                }
            },
        };
        encode_frame(&frame, &mut buf);
        if writer.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
        if matches!(frame, Frame::GoAway { .. }) {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// The two zlib contexts of a connection: SPDY compresses every header block of one
/// direction with one zlib stream (SPDY dictionary, a sync flush after each block), so each
/// block may refer back to earlier ones.
pub struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Setting the dictionary right after init writes it into the zlib header (FDICT), as
        // Go's `zlib.NewWriterLevelDict` does; it cannot fail on a fresh stream.
        if let Err(error) = deflate.set_dictionary(DICTIONARY) {
            tracing::error!(%error, "cannot set the SPDY header dictionary");
        }
        HeaderCodec {
            inflate: Decompress::new(true),
            deflate,
        }
    }
}

/// Room added to the output buffer whenever zlib fills it.
const CHUNK: usize = 4096;
/// Largest decompressed header block accepted (a compression bomb ends the session).
const MAX_HEADER_BLOCK: usize = 1 << 20;

impl HeaderCodec {
    /// Decompress and parse a header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate_block(block)?;
        parse_headers(&raw)
    }

    fn inflate_block(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(CHUNK);
        let start = self.inflate.total_in();
        loop {
            let consumed = (self.inflate.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError("header block too large".to_owned()));
                }
                out.reserve(CHUNK);
            }
            let before = (self.inflate.total_in(), self.inflate.total_out());
            match self.inflate.decompress_vec(
                &block[consumed.min(block.len())..],
                &mut out,
                FlushDecompress::Sync,
            ) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(DICTIONARY).map_err(|e| {
                        SpdyError(format!("header block: cannot set dictionary: {e}"))
                    })?;
                    continue;
                }
                Err(e) => return Err(SpdyError(format!("header block: {e}"))),
            }
            let all_in = (self.inflate.total_in() - start) as usize >= block.len();
            let progressed = (self.inflate.total_in(), self.inflate.total_out()) != before;
            // Done once every input byte is consumed and zlib had room to spare (nothing
            // pending); stuck without progress means a truncated block.
            if all_in && out.len() < out.capacity() {
                return Ok(out);
            }
            if !progressed && out.len() < out.capacity() {
                return Err(SpdyError("header block: truncated zlib data".to_owned()));
            }
        }
    }

    /// Serialize and compress a header block.
    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Bytes, SpdyError> {
        let mut raw = BytesMut::new();
        raw.put_u32(headers.len() as u32);
        for (k, v) in headers {
            raw.put_u32(k.len() as u32);
            raw.put_slice(k.as_bytes());
            raw.put_u32(v.len() as u32);
            raw.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start = self.deflate.total_in();
        loop {
            let consumed = (self.deflate.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(CHUNK);
            }
            self.deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError(format!("compress header block: {e}")))?;
            let all_in = (self.deflate.total_in() - start) as usize >= raw.len();
            if all_in && out.len() < out.capacity() {
                return Ok(Bytes::from(out));
            }
        }
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
        let read = |buf: &mut &[u8]| -> Result<String, SpdyError> {
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

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        // zlib reports the dictionary's Adler-32, the DICTID kubectl's streams carry.
        let mut deflate = Compress::new(Compression::default(), true);
        assert_eq!(deflate.set_dictionary(DICTIONARY).ok(), Some(0xe3c6_a7c2));
    }

    #[test]
    fn rejects_garbage_and_truncated_blocks() {
        let mut codec = HeaderCodec::default();
        assert!(codec.decode(b"not zlib at all").is_err());
        let mut client = HeaderCodec::default();
        let block = client
            .encode(&[("streamtype".to_owned(), "data".to_owned())])
            .expect("encode");
        let mut server = HeaderCodec::default();
        assert!(server.decode(&block[..block.len() / 2]).is_err());
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

    /// Two header blocks as a real zlib (level 6, SPDY dictionary, sync flush per block)
    /// compresses them, the second one mostly back-references into the first.
    #[test]
    fn decodes_what_a_real_zlib_sends() {
        let b1: &[u8] = &[
            0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x70, 0x3a, 0x2b, 0x29, 0x4a,
            0x4d, 0xcc, 0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80, 0x86, 0x14, 0xcb, 0x45, 0xe0,
            0x1c, 0x60, 0x61, 0x60, 0x61, 0x00, 0xa4, 0x39, 0x8b, 0x20, 0xd1, 0x98, 0x09, 0x4a,
            0xde, 0x8c, 0x06, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let b2: &[u8] = &[
            0xc2, 0xaa, 0x19, 0x54, 0x0e, 0x25, 0x12, 0xd6, 0x0b, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let mut codec = HeaderCodec::default();
        let first = codec.decode(b1).expect("first block");
        assert_eq!(header(&first, "streamtype"), Some("error"));
        assert_eq!(header(&first, "port"), Some("8080"));
        let second = codec.decode(b2).expect("second block");
        assert_eq!(header(&second, "streamtype"), Some("data"));
        assert_eq!(header(&second, "requestid"), Some("0"));
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
