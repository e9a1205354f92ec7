//! exec and attach over WebSocket, the channel protocol kubectl ≥ 1.30 speaks
//! (`v5.channel.k8s.io`; `v4.channel.k8s.io` too, without the close signal).
//!
//! Every message is binary: byte 0 is the [`Channel`], the rest the payload. The client
//! sends stdin (0), resizes (4, JSON) and in v5 the close signal `[255, channel]`
//! (`[255, 0]` = stdin end-of-file); the server sends stdout (1), stderr (2) and at the end
//! the `Status` on the error channel (3), then a normal close frame, which is the
//! end-of-file of every stream for the client. WebSocket framing, masking and pongs are
//! axum's (tungstenite); [`decode`] and [`encode`] are the pure channel layer.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use skiff_runtimes::TerminalSize;
use tokio::sync::mpsc;

use super::remotecommand::{self, Channel, ClientInput, Operation, Session};

/// The channel protocol of kubectl ≥ 1.30, with the close signal.
pub const V5: &str = "v5.channel.k8s.io";
/// The previous channel protocol (same channels, no close signal).
pub const V4: &str = "v4.channel.k8s.io";
/// What this server speaks, preferred first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];
/// v5's first byte for "the stream in the next byte is closed".
pub const CLOSE_SIGNAL: u8 = 255;

/// How long to wait for the client's close reply after ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A client message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Input for the process.
    Stdin(Bytes),
    /// A new terminal size.
    Resize(TerminalSize),
    /// v5: the client closed its side of a channel (stdin: end-of-file).
    Close(Channel),
}

/// A client message that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message names no channel a client may write to.
    #[error("message on unknown or server-only channel {0}")]
    Channel(u8),
    /// A close signal is one byte after the signal, naming a known channel.
    #[error("malformed close signal ({0} bytes)")]
    CloseSignal(usize),
    /// A resize message is not `{"Width":W,"Height":H}`.
    #[error("invalid terminal size: {0}")]
    Resize(String),
}

/// Decode one binary message from the client. `Ok(None)` for an empty message (ignored).
pub fn decode(data: &[u8], v5: bool) -> Result<Option<ClientMessage>, FrameError> {
    let Some((&first, payload)) = data.split_first() else {
        return Ok(None);
    };
    if v5 && first == CLOSE_SIGNAL {
        return match payload {
            [channel] => Channel::from_byte(*channel)
                .map(|c| Some(ClientMessage::Close(c)))
                .ok_or(FrameError::Channel(*channel)),
            _ => Err(FrameError::CloseSignal(payload.len())),
        };
    }
    match Channel::from_byte(first) {
        Some(Channel::Stdin) => Ok(Some(ClientMessage::Stdin(Bytes::copy_from_slice(payload)))),
        Some(Channel::Resize) => serde_json::from_slice(payload)
            .map(|size| Some(ClientMessage::Resize(size)))
            .map_err(|e| FrameError::Resize(e.to_string())),
        _ => Err(FrameError::Channel(first)),
    }
}

/// A server message: the channel byte, then the payload.
pub fn encode(channel: Channel, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + payload.len());
    out.put_u8(channel as u8);
    out.put_slice(payload);
    out.freeze()
}

/// Serve one exec or attach over an upgraded WebSocket speaking `protocol` ([`V5`] or
/// [`V4`]) until the session ends or the client goes away.
pub async fn serve(socket: WebSocket, session: Session, operation: Operation, protocol: &str) {
    let v5 = protocol == V5;
    let (mut sink, mut stream) = socket.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(8);
    let (out_tx, mut out_rx) = mpsc::channel::<(Channel, Bytes)>(16);

    // Reads until the client closes or breaks the protocol; pings are answered by the
    // socket as it reads.
    let reader = async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(message) = stream.next().await {
            let data = match message {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            match decode(&data, v5) {
                Ok(Some(ClientMessage::Stdin(chunk))) => {
                    if let Some(tx) = &stdin_tx
                        && tx.send(chunk).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                Ok(Some(ClientMessage::Resize(size))) => {
                    let _ = resize_tx.send(size).await;
                }
                Ok(Some(ClientMessage::Close(Channel::Stdin))) => stdin_tx = None,
                Ok(Some(ClientMessage::Close(_)) | None) => {}
                Err(error) => {
                    tracing::debug!(%error, "exec websocket: protocol error");
                    break;
                }
            }
        }
    };
    let work = async {
        let input = ClientInput {
            stdin: stdin_rx,
            resize: resize_rx,
        };
        let writer = async {
            while let Some((channel, data)) = out_rx.recv().await {
                if sink
                    .send(Message::Binary(encode(channel, &data)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            true
        };
        let (outcome, connected) = tokio::join!(
            remotecommand::run(session, &operation, input, out_tx),
            writer
        );
        connected.then_some(outcome)
    };
    let mut reader = std::pin::pin!(reader);
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = &mut reader => {
            tracing::debug!("exec websocket: client went away");
            return;
        }
    };
    let Some(outcome) = outcome else { return };
    let status = encode(Channel::Error, &outcome.status_json(&operation));
    if sink.send(Message::Binary(status)).await.is_ok() {
        let close = CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = tokio::time::timeout(CLOSE_GRACE, reader).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_client_channels() {
        assert_eq!(
            decode(b"\x00hello", true),
            Ok(Some(ClientMessage::Stdin(Bytes::from_static(b"hello"))))
        );
        assert_eq!(
            decode(b"\x04{\"Width\":120,\"Height\":40}", true),
            Ok(Some(ClientMessage::Resize(TerminalSize {
                width: 120,
                height: 40
            })))
        );
        assert_eq!(
            decode(&[255, 0], true),
            Ok(Some(ClientMessage::Close(Channel::Stdin)))
        );
        assert_eq!(decode(&[], true), Ok(None));
        // An empty stdin message is data, not end-of-file.
        assert_eq!(
            decode(&[0], true),
            Ok(Some(ClientMessage::Stdin(Bytes::new())))
        );
    }

    #[test]
    fn rejects_what_breaks_the_protocol() {
        assert_eq!(decode(&[255, 0, 1], true), Err(FrameError::CloseSignal(2)));
        assert_eq!(decode(&[255], true), Err(FrameError::CloseSignal(0)));
        assert_eq!(decode(&[255, 9], true), Err(FrameError::Channel(9)));
        // v4 has no close signal.
        assert_eq!(decode(&[255, 0], false), Err(FrameError::Channel(255)));
        // Output channels are the server's.
        assert_eq!(decode(b"\x01x", true), Err(FrameError::Channel(1)));
        assert!(matches!(
            decode(b"\x04{}", true),
            Err(FrameError::Resize(_))
        ));
    }

    #[test]
    fn encodes_the_channel_first() {
        assert_eq!(
            encode(Channel::Stdout, b"out"),
            Bytes::from_static(b"\x01out")
        );
        assert_eq!(encode(Channel::Error, b""), Bytes::from_static(b"\x03"));
    }
}
