//! Port-forward over SPDY/3.1 (`portforward.k8s.io`): for every forwarded connection kubectl
//! opens an `error` and a `data` stream sharing a `requestid` and naming a `port`; the data
//! stream is piped to `<pod IP>:<port>`, and a failure is written on the error stream.
//!
//! [`serve`] runs one upgraded connection (raw SPDY, or SPDY bytes carried in WebSocket
//! binary messages — both arrive here as a byte stream). One writer task owns the outgoing
//! zlib context; the reader handles frames in order.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::spdy::{self, FLAG_FIN, Frame, HeaderCodec};

/// What the writer task sends.
enum Out {
    Frame(Frame),
    Reply(u32),
}

struct Stream {
    kind: String,
    request_id: String,
    tcp: Option<OwnedWriteHalf>,
}

/// Serve one port-forward connection to `pod_ip` until the client goes away.
pub async fn serve<S>(io: S, pod_ip: IpAddr)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let writer_task = tokio::spawn(async move {
        let mut codec = HeaderCodec::default();
        let mut buf = BytesMut::new();
        while let Some(out) = rx.recv().await {
            let frame = match out {
                Out::Frame(f) => f,
                Out::Reply(stream_id) => match codec.encode(&[]) {
                    Ok(block) => Frame::SynReply {
                        stream_id,
                        flags: 0,
                        block,
                    },
                    Err(error) => {
                        tracing::debug!(%error, "port-forward: cannot encode reply");
                        break;
                    }
                },
            };
            spdy::encode_frame(&frame, &mut buf);
            if writer.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
            if matches!(frame, Frame::GoAway { .. }) {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });

    let mut codec = HeaderCodec::default();
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        loop {
            match spdy::parse_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if !handle(frame, &mut codec, &mut streams, &tx, pod_ip).await {
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
    tx: &mpsc::UnboundedSender<Out>,
    pod_ip: IpAddr,
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
            let _ = tx.send(Out::Reply(stream_id));
            let mut stream = Stream {
                kind: kind.clone(),
                request_id: request_id.clone(),
                tcp: None,
            };
            if kind == "data" {
                match connect(pod_ip, &port).await {
                    Ok(tcp) => {
                        let (mut read, write) = tcp.into_split();
                        stream.tcp = Some(write);
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let mut chunk = vec![0u8; 32 * 1024];
                            loop {
                                match read.read(&mut chunk).await {
                                    Ok(0) | Err(_) => {
                                        let _ = tx.send(Out::Frame(Frame::Data {
                                            stream_id,
                                            flags: FLAG_FIN,
                                            data: Bytes::new(),
                                        }));
                                        break;
                                    }
                                    Ok(n) => {
                                        let data = Bytes::copy_from_slice(&chunk[..n]);
                                        if tx
                                            .send(Out::Frame(Frame::Data {
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
                        if let Some((error_id, _)) = streams
                            .iter()
                            .find(|(_, s)| s.kind == "error" && s.request_id == request_id)
                        {
                            let _ = tx.send(Out::Frame(Frame::Data {
                                stream_id: *error_id,
                                flags: FLAG_FIN,
                                data: Bytes::from(message),
                            }));
                        }
                        let _ = tx.send(Out::Frame(Frame::Data {
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
            let _ = tx.send(Out::Frame(Frame::Ping(id)));
            true
        }
        Frame::GoAway { .. } => false,
        Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Other { .. } => true,
    }
}

async fn connect(pod_ip: IpAddr, port: &str) -> Result<tokio::net::TcpStream, String> {
    let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
    let addr = SocketAddr::new(pod_ip, port);
    tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("error forwarding port {port} to pod: dial tcp {addr}: {e}"))
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
        tokio::spawn(serve(server, "127.0.0.1".parse().expect("ip")));
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
    }
}
