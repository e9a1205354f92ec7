//! exec and attach over SPDY/3.1 (`v4.channel.k8s.io`), what kubectl 1.27–1.29 speak and
//! what newer ones fall back to when the WebSocket upgrade is refused.
//!
//! After the `101`, the client opens one SPDY stream per channel, naming it in the
//! `streamtype` header (`error`, then `stdin`, `stdout`, `stderr`, `resize` as asked for);
//! each gets a `SYN_REPLY`. Once every expected stream exists the session is piped
//! ([`remotecommand::run`]): stdin data (its `FIN` is end-of-file) and resize JSON come in,
//! stdout/stderr data go out. At the end the `Status` is written on `error`, every server
//! stream gets `FIN`, then `GOAWAY`. Framing and header compression are [`super::spdy`]'s;
//! one writer task owns the outgoing zlib context and the write half.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use skiff_runtimes::TerminalSize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::remotecommand::{self, Channel, ClientInput, Operation, Session, StreamOptions};
use super::spdy::{self, FLAG_FIN, Frame, HeaderCodec, Outgoing};

/// The SPDY exec protocol: the `Status` JSON on the error stream.
pub const V4: &str = "v4.channel.k8s.io";
/// What kubectl 1.29+ offers first; over SPDY it is the same protocol as v4.
pub const V5: &str = "v5.channel.k8s.io";
/// What this server speaks over SPDY, preferred first.
pub const PROTOCOLS: [&str; 2] = [V4, V5];

/// How long the client has to open its streams (the kubelet's stream-creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the client to hang up after our `GOAWAY`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The protocol to answer with, from the client's `X-Stream-Protocol-Version` values.
pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered.into_iter().map(str::trim).collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// The streams the client opens for a request (`error` always).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// `stdin`.
    pub stdin: bool,
    /// `stdout`.
    pub stdout: bool,
    /// `stderr` (never with a terminal).
    pub stderr: bool,
    /// `resize` (with a terminal).
    pub resize: bool,
}

impl Expected {
    /// What kubectl opens for these options.
    pub fn from_options(options: &StreamOptions) -> Self {
        Expected {
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr && !options.tty,
            resize: options.tty,
        }
    }

    /// True once every expected stream is among `open`.
    pub fn satisfied_by(&self, open: &HashMap<Channel, u32>) -> bool {
        let needs = [
            (true, Channel::Error),
            (self.stdin, Channel::Stdin),
            (self.stdout, Channel::Stdout),
            (self.stderr, Channel::Stderr),
            (self.resize, Channel::Resize),
        ];
        needs
            .iter()
            .all(|(wanted, channel)| !wanted || open.contains_key(channel))
    }
}

/// The resize stream: JSON sizes written back to back (Go's `json.Encoder`), split across
/// data frames anywhere.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    buf: BytesMut,
}

impl ResizeDecoder {
    /// Add received bytes; returns the sizes completed by them.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<TerminalSize>, String> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        loop {
            let mut parsed =
                serde_json::Deserializer::from_slice(&self.buf).into_iter::<TerminalSize>();
            match parsed.next() {
                Some(Ok(size)) => {
                    let used = parsed.byte_offset();
                    sizes.push(size);
                    self.buf.advance(used);
                }
                Some(Err(error)) if error.is_eof() => break,
                Some(Err(error)) => return Err(error.to_string()),
                None => {
                    // Only whitespace left.
                    self.buf.clear();
                    break;
                }
            }
        }
        Ok(sizes)
    }
}

/// Serve one exec or attach on an upgraded SPDY connection until the session ends or the
/// client goes away.
pub async fn serve<S>(io: S, session: Session, operation: Operation, expected: Expected)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let (frames, frames_rx) = mpsc::channel::<Outgoing>(64);
    let writer = tokio::spawn(spdy::write_frames(
        write_half,
        ReceiverStream::new(frames_rx),
        "exec spdy",
    ));
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(8);
    let (ready_tx, ready_rx) = oneshot::channel::<HashMap<Channel, u32>>();
    let reader = read_frames(
        read_half,
        Inbound {
            codec: HeaderCodec::default(),
            streams: HashMap::new(),
            open: HashMap::new(),
            expected,
            ready: Some(ready_tx),
            stdin: Some(stdin_tx),
            resize: resize_tx,
            resizes: ResizeDecoder::default(),
            frames: frames.clone(),
        },
    );
    let work = async {
        let Ok(Ok(ids)) = tokio::time::timeout(STREAM_CREATION_TIMEOUT, ready_rx).await else {
            tracing::debug!("exec spdy: the client did not open its streams in time");
            return None;
        };
        let (out_tx, mut out_rx) = mpsc::channel::<(Channel, Bytes)>(16);
        let forward = async {
            while let Some((channel, data)) = out_rx.recv().await {
                let Some(&stream_id) = ids.get(&channel) else {
                    continue;
                };
                let frame = Frame::Data {
                    stream_id,
                    flags: 0,
                    data,
                };
                if frames.send(Outgoing::Frame(frame)).await.is_err() {
                    return;
                }
            }
        };
        let input = ClientInput {
            stdin: stdin_rx,
            resize: resize_rx,
        };
        let (outcome, ()) = tokio::join!(
            remotecommand::run(session, &operation, input, out_tx),
            forward
        );
        Some((ids, outcome))
    };
    let mut reader = std::pin::pin!(reader);
    let finished = tokio::select! {
        finished = work => finished,
        () = &mut reader => {
            tracing::debug!("exec spdy: client went away");
            None
        }
    };
    if let Some((ids, outcome)) = finished {
        let mut closing = Vec::new();
        if let Some(&error) = ids.get(&Channel::Error) {
            closing.push(Frame::Data {
                stream_id: error,
                flags: FLAG_FIN,
                data: outcome.status_json(&operation),
            });
        }
        for channel in [Channel::Stdout, Channel::Stderr] {
            if let Some(&stream_id) = ids.get(&channel) {
                closing.push(Frame::Data {
                    stream_id,
                    flags: FLAG_FIN,
                    data: Bytes::new(),
                });
            }
        }
        closing.push(Frame::GoAway {
            last_stream_id: ids.values().copied().max().unwrap_or(0),
            status: 0,
        });
        for frame in closing {
            if frames.send(Outgoing::Frame(frame)).await.is_err() {
                break;
            }
        }
        drop(frames);
        let _ = writer.await;
        let _ = tokio::time::timeout(CLOSE_GRACE, reader).await;
    } else {
        writer.abort();
    }
}

/// The reader's state.
struct Inbound {
    codec: HeaderCodec,
    /// Client stream id → channel.
    streams: HashMap<u32, Channel>,
    /// Channel → client stream id.
    open: HashMap<Channel, u32>,
    expected: Expected,
    ready: Option<oneshot::Sender<HashMap<Channel, u32>>>,
    stdin: Option<mpsc::Sender<Bytes>>,
    resize: mpsc::Sender<TerminalSize>,
    resizes: ResizeDecoder,
    frames: mpsc::Sender<Outgoing>,
}

/// Read and handle frames until the client hangs up, says `GOAWAY` or breaks the protocol.
async fn read_frames<R: AsyncRead>(reader: R, mut inbound: Inbound) {
    let mut reader = std::pin::pin!(reader);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        loop {
            match spdy::parse_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if !inbound.handle(frame).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "exec spdy: bad frame");
                    return;
                }
            }
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

impl Inbound {
    /// Handle one frame; false ends the connection.
    async fn handle(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::SynStream {
                stream_id, block, ..
            } => {
                let headers = match self.codec.decode(&block) {
                    Ok(headers) => headers,
                    Err(error) => {
                        tracing::debug!(%error, "exec spdy: bad headers");
                        return false;
                    }
                };
                if self.frames.send(Outgoing::Reply(stream_id)).await.is_err() {
                    return false;
                }
                let kind = spdy::header(&headers, "streamtype").unwrap_or_default();
                let Some(channel) = Channel::from_stream_type(kind) else {
                    tracing::debug!(kind, "exec spdy: unknown stream type");
                    return true;
                };
                self.streams.insert(stream_id, channel);
                self.open.insert(channel, stream_id);
                if self.expected.satisfied_by(&self.open)
                    && let Some(ready) = self.ready.take()
                {
                    let _ = ready.send(self.open.clone());
                }
                true
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                match self.streams.get(&stream_id) {
                    Some(Channel::Stdin) => {
                        if !data.is_empty()
                            && let Some(stdin) = &self.stdin
                            && stdin.send(data).await.is_err()
                        {
                            self.stdin = None;
                        }
                        if flags & FLAG_FIN != 0 {
                            self.stdin = None;
                        }
                    }
                    Some(Channel::Resize) => match self.resizes.push(&data) {
                        Ok(sizes) => {
                            for size in sizes {
                                let _ = self.resize.send(size).await;
                            }
                        }
                        Err(error) => tracing::debug!(%error, "exec spdy: bad resize"),
                    },
                    _ => {}
                }
                true
            }
            Frame::RstStream { stream_id, .. } => {
                if self.streams.get(&stream_id) == Some(&Channel::Stdin) {
                    self.stdin = None;
                }
                true
            }
            Frame::Ping(id) => self
                .frames
                .send(Outgoing::Frame(Frame::Ping(id)))
                .await
                .is_ok(),
            Frame::GoAway { .. } => false,
            Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Other { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_v4() {
        let kubectl_129 = [
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io",
        ];
        assert_eq!(negotiate(kubectl_129), Some(V4));
        assert_eq!(negotiate(["v5.channel.k8s.io"]), Some(V5));
        assert_eq!(negotiate(["v3.channel.k8s.io", "channel.k8s.io"]), None);
        assert_eq!(negotiate([]), None);
    }

    #[test]
    fn expected_streams_follow_the_options() {
        let options = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
            command: vec![],
        };
        let expected = Expected::from_options(&options);
        let mut open = HashMap::from([(Channel::Error, 1), (Channel::Stdin, 3)]);
        assert!(!expected.satisfied_by(&open));
        open.insert(Channel::Stdout, 5);
        open.insert(Channel::Stderr, 7);
        assert!(expected.satisfied_by(&open));
        let tty = Expected::from_options(&StreamOptions {
            tty: true,
            ..options
        });
        assert!(!tty.stderr && tty.resize);
        open.remove(&Channel::Stderr);
        assert!(!tty.satisfied_by(&open));
        open.insert(Channel::Resize, 9);
        assert!(tty.satisfied_by(&open));
    }

    #[test]
    fn resize_json_split_anywhere() {
        let mut decoder = ResizeDecoder::default();
        assert_eq!(decoder.push(b"{\"Width\":80,"), Ok(vec![]));
        assert_eq!(
            decoder.push(b"\"Height\":24}\n{\"Width\":100,\"Height\":30}\n{\"Wi"),
            Ok(vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 30
                }
            ])
        );
        assert_eq!(
            decoder.push(b"dth\":1,\"Height\":2}\n"),
            Ok(vec![TerminalSize {
                width: 1,
                height: 2
            }])
        );
        assert!(decoder.push(b"]").is_err());
    }
}
