//! Port-forward over SPDY/3.1 (`portforward.k8s.io`): for every forwarded connection kubectl
//! opens an `error` and a `data` stream sharing a `requestid` and naming a `port`; the data
//! stream is piped to `<pod IP>:<port>`, and a failure is written on the error stream.
//!
//! [`serve`] runs one upgraded connection (raw SPDY, or SPDY bytes carried in WebSocket
//! binary messages — both arrive here as a byte stream). One writer task owns the outgoing
//! zlib context; the reader handles frames in order.
//!
//! Like the kubelet with containerd, a forwarded port is dialled at `127.0.0.1` *inside the
//! pod's network namespace* ([`PodTarget`]), so a server that listens on the pod's loopback
//! only is reachable too.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::spdy::{self, FLAG_FIN, Frame, HeaderCodec, Outgoing};

struct Stream {
    kind: String,
    request_id: String,
    tcp: Option<OwnedWriteHalf>,
}

/// Where a pod's ports are reached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodTarget {
    /// The pod's network namespace; `None` for host-network pods (the node's loopback).
    pub netns: Option<PathBuf>,
}

/// Serve one port-forward connection to the pod at `target` until the client goes away.
pub async fn serve<S>(io: S, target: PodTarget)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
    let writer_task = tokio::spawn(spdy::write_frames(
        writer,
        UnboundedReceiverStream::new(rx),
        "port-forward",
    ));

    let mut codec = HeaderCodec::default();
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        loop {
            match spdy::parse_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if !handle(frame, &mut codec, &mut streams, &tx, &target).await {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "port-forward: bad frame");
                    break 'read;
                }
            }
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(streams);
    drop(tx);
    let _ = writer_task.await;
}

/// Handle one frame; false ends the session.
async fn handle(
    frame: Frame,
    codec: &mut HeaderCodec,
    streams: &mut HashMap<u32, Stream>,
    tx: &mpsc::UnboundedSender<Outgoing>,
    target: &PodTarget,
) -> bool {
    match frame {
        Frame::SynStream {
            stream_id, block, ..
        } => {
            let headers = match codec.decode(&block) {
                Ok(h) => h,
                Err(error) => {
                    tracing::debug!(%error, "port-forward: bad headers");
                    return false;
                }
            };
            let kind = spdy::header(&headers, "streamtype")
                .unwrap_or_default()
                .to_owned();
            let request_id = spdy::header(&headers, "requestid")
                .unwrap_or_default()
                .to_owned();
            let port = spdy::header(&headers, "port")
                .unwrap_or_default()
                .to_owned();
            let _ = tx.send(Outgoing::Reply(stream_id));
            let mut stream = Stream {
                kind: kind.clone(),
                request_id: request_id.clone(),
                tcp: None,
            };
            if kind == "data" {
                // kubectl opens the request's error stream first.
                let error_id = streams
                    .iter()
                    .find(|(_, s)| s.kind == "error" && s.request_id == request_id)
                    .map(|(id, _)| *id);
                match connect(target, &port).await {
                    Ok(tcp) => {
                        let (mut read, write) = tcp.into_split();
                        stream.tcp = Some(write);
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let mut chunk = vec![0u8; 32 * 1024];
                            loop {
                                match read.read(&mut chunk).await {
                                    Ok(0) | Err(_) => {
                                        // The pod closed the connection: end both streams of
                                        // the request, as the kubelet does; kubectl closes
                                        // its local connection once the error stream ends.
                                        for id in std::iter::once(stream_id).chain(error_id) {
                                            let _ = tx.send(Outgoing::Frame(Frame::Data {
                                                stream_id: id,
                                                flags: FLAG_FIN,
                                                data: Bytes::new(),
                                            }));
                                        }
                                        break;
                                    }
                                    Ok(n) => {
                                        let data = Bytes::copy_from_slice(&chunk[..n]);
                                        if tx
                                            .send(Outgoing::Frame(Frame::Data {
                                                stream_id,
                                                flags: 0,
                                                data,
                                            }))
                                            .is_err()
                                        {
                                            break;
                                        }
                                    }
                                }
                            }
                        });
                    }
                    Err(message) => {
                        // Report on the error stream of the same request, then end data.
                        if let Some(error_id) = error_id {
                            let _ = tx.send(Outgoing::Frame(Frame::Data {
                                stream_id: error_id,
                                flags: FLAG_FIN,
                                data: Bytes::from(message),
                            }));
                        }
                        let _ = tx.send(Outgoing::Frame(Frame::Data {
                            stream_id,
                            flags: FLAG_FIN,
                            data: Bytes::new(),
                        }));
                    }
                }
            }
            streams.insert(stream_id, stream);
            true
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            if let Some(stream) = streams.get_mut(&stream_id)
                && let Some(tcp) = stream.tcp.as_mut()
            {
                if !data.is_empty() && tcp.write_all(&data).await.is_err() {
                    stream.tcp = None;
                }
                if flags & FLAG_FIN != 0
                    && let Some(mut tcp) = stream.tcp.take()
                {
                    let _ = tcp.shutdown().await;
                }
            }
            true
        }
        Frame::RstStream { stream_id, .. } => {
            streams.remove(&stream_id);
            true
        }
        Frame::Ping(id) => {
            let _ = tx.send(Outgoing::Frame(Frame::Ping(id)));
            true
        }
        Frame::GoAway { .. } => false,
        Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Other { .. } => true,
    }
}

/// How long dialling a pod port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Dial `127.0.0.1:port` in the pod's network namespace. The socket is created on a thread
/// that entered the namespace, so it lives there; tokio then drives it from any thread.
async fn connect(target: &PodTarget, port: &str) -> Result<tokio::net::TcpStream, String> {
    let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let fail = |e: &dyn std::fmt::Display| {
        format!("error forwarding port {port} to pod: dial tcp4 {addr}: {e}")
    };
    let Some(path) = target.netns.clone() else {
        return match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(result) => result.map_err(|e| fail(&e)),
            Err(_) => Err(fail(&"i/o timeout")),
        };
    };
    let stream = tokio::task::spawn_blocking(move || {
        let netns = skiff_runtimes::netns::Netns::open(&path).map_err(|e| e.to_string())?;
        netns
            .run(move || std::net::TcpStream::connect_timeout(&addr, DIAL_TIMEOUT))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| fail(&e))?
    .map_err(|e| fail(&e))?;
    stream.set_nonblocking(true).map_err(|e| fail(&e))?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal SPDY client: opens error+data streams for one request and pipes bytes.
    #[tokio::test]
    async fn forwards_a_connection_to_the_pod_port() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = echo.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(server, PodTarget::default()));
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut codec = HeaderCodec::default();
        let mut out = BytesMut::new();
        for (id, kind) in [(1u32, "error"), (3, "data")] {
            let block = codec
                .encode(&[
                    ("streamtype".into(), kind.into()),
                    ("port".into(), port.to_string()),
                    ("requestid".into(), "0".into()),
                ])
                .expect("headers");
            spdy::encode_frame(
                &Frame::SynStream {
                    stream_id: id,
                    flags: 0,
                    block,
                },
                &mut out,
            );
        }
        spdy::encode_frame(&Frame::Ping(42), &mut out);
        spdy::encode_frame(
            &Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"ping over spdy"),
            },
            &mut out,
        );
        wr.write_all(&out).await.expect("write");

        let mut replies = Vec::new();
        let mut echoed = Vec::new();
        let mut pinged = false;
        let mut inbound = BytesMut::new();
        let mut reply_codec = HeaderCodec::default();
        while echoed.len() < 14 || replies.len() < 2 || !pinged {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(5), rd.read_buf(&mut inbound))
                    .await
                    .expect("in time")
                    .expect("read");
            assert!(n > 0, "server closed early");
            while let Some(frame) = spdy::parse_frame(&mut inbound).expect("frame") {
                match frame {
                    Frame::SynReply {
                        stream_id, block, ..
                    } => {
                        assert!(
                            reply_codec
                                .decode(&block)
                                .expect("reply headers")
                                .is_empty()
                        );
                        replies.push(stream_id);
                    }
                    Frame::Data {
                        stream_id: 3, data, ..
                    } => echoed.extend_from_slice(&data),
                    Frame::Ping(42) => pinged = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(replies, vec![1, 3]);
        assert_eq!(echoed, b"ping over spdy");

        // The client half-closes the data stream; the echo server then closes its end, and
        // both streams of the request end (kubectl waits for the error stream to end).
        let mut fin = BytesMut::new();
        spdy::encode_frame(
            &Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            &mut fin,
        );
        wr.write_all(&fin).await.expect("write fin");
        let mut ended = Vec::new();
        while ended.len() < 2 {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(5), rd.read_buf(&mut inbound))
                    .await
                    .expect("streams end in time")
                    .expect("read");
            assert!(n > 0, "server closed early");
            while let Some(frame) = spdy::parse_frame(&mut inbound).expect("frame") {
                match frame {
                    Frame::Data {
                        stream_id, flags, ..
                    } if flags & FLAG_FIN != 0 => ended.push(stream_id),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        ended.sort_unstable();
        assert_eq!(ended, vec![1, 3]);
    }
}
