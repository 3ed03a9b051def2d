//! HTTP/2 by hand, for the shutdown tests: the frames a gRPC caller writes and reads, and a
//! caller that orders its writes the way grpc-core (Python, C++, Ruby, PHP clients) does. tonic's
//! own client never raises a stream's window right after its headers, nor writes a PING
//! acknowledgement ahead of a stream it had queued, so it cannot show how a draining server
//! treats such callers. `credits-bench faults sigterm` includes this file too (`#[path]`).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tokio_util::sync::CancellationToken;

pub(crate) const DATA: u8 = 0;
pub(crate) const HEADERS: u8 = 1;
pub(crate) const RST_STREAM: u8 = 3;
pub(crate) const SETTINGS: u8 = 4;
pub(crate) const PING: u8 = 6;
pub(crate) const GOAWAY: u8 = 7;
pub(crate) const WINDOW_UPDATE: u8 = 8;
pub(crate) const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

#[derive(Debug)]
pub(crate) struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// GOAWAY's last stream id and error code.
    pub(crate) fn go_away(&self) -> (u32, u32) {
        (self.word(0) & 0x7fff_ffff, self.word(4))
    }

    fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().expect("4 bytes"))
    }

    pub(crate) fn ends_stream(&self) -> bool {
        matches!(self.kind, HEADERS | DATA) && self.flags & END_STREAM != 0
    }
}

pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame").to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

pub(crate) fn pong(payload: &[u8]) -> Vec<u8> {
    frame(PING, ACK, 0, payload)
}

pub(crate) fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// A literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2).
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    block.push(u8::try_from(name.len()).expect("short name"));
    block.extend_from_slice(name.as_bytes());
    block.push(u8::try_from(value.len()).expect("short value"));
    block.extend_from_slice(value.as_bytes());
}

/// A unary gRPC call on `stream`: HEADERS, then one DATA frame that ends the stream.
pub(crate) fn call(authority: &str, stream: u32, method: &str, message: &[u8]) -> Vec<Vec<u8>> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        literal(&mut block, name, value);
    }
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).expect("small message").to_be_bytes());
    body.extend_from_slice(message);
    vec![
        frame(HEADERS, END_HEADERS, stream, &block),
        frame(DATA, END_STREAM, stream, &body),
    ]
}

/// A call as grpc-core writes it: headers, the stream's window raised at once, the message.
pub(crate) fn core_call(authority: &str, stream: u32, method: &str, message: &[u8]) -> Vec<u8> {
    let mut frames = call(authority, stream, method, message);
    frames.insert(1, window_update(stream, 4 << 20));
    frames.concat()
}

async fn read_frame(reader: &mut OwnedReadHalf) -> Option<Frame> {
    let mut head = [0u8; 9];
    reader.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// One connection: the preface and SETTINGS exchanged.
pub(crate) struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
}

impl Connection {
    pub(crate) async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (reader, mut writer) = stream.into_split();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        writer.write_all(&hello).await?;
        let mut connection = Self { reader, writer };
        loop {
            let frame = connection.read().await.ok_or(std::io::ErrorKind::UnexpectedEof)?;
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                connection.write(&frame_ack()).await?;
                return Ok(connection);
            }
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// The next frame, or `None` at the end of the connection.
    pub(crate) async fn read(&mut self) -> Option<Frame> {
        read_frame(&mut self.reader).await
    }
}

fn frame_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}

/// How one stream of a [`core_like_caller`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// Trailers (or a trailers-only answer) arrived: the server answered it.
    Answered,
    /// Above the last stream id of a GOAWAY: never processed, safe to retry elsewhere.
    Unprocessed,
    /// RST_STREAM, a GOAWAY with an error, or the connection closed under it.
    Cut(String),
}

#[derive(Debug, Clone)]
pub(crate) struct RawCall {
    pub method: &'static str,
    pub sent: Instant,
    pub ended: Instant,
    pub end: StreamEnd,
}

/// Calls `calls` in turn on one connection, up to `depth` at a time, writing like grpc-core,
/// until `stop` fires or the server ends the connection; returns every stream's end (none when
/// the connection could not be opened).
pub(crate) async fn core_like_caller(
    addr: SocketAddr,
    calls: Vec<(&'static str, Vec<u8>)>,
    depth: usize,
    stop: CancellationToken,
) -> std::io::Result<Vec<RawCall>> {
    let authority = addr.to_string();
    let mut connection = Connection::open(addr).await?;
    let mut next_stream = 1u32;
    let mut open: BTreeMap<u32, (&'static str, Instant)> = BTreeMap::new();
    let mut done = Vec::new();
    let mut turn = calls.iter().cycle();
    let mut going_away: Option<u32> = None;
    let mut start_call = |open: &mut BTreeMap<u32, (&'static str, Instant)>| {
        let (method, message) = turn.next().expect("calls to make");
        let stream = next_stream;
        next_stream += 2;
        open.insert(stream, (method, Instant::now()));
        core_call(
            &authority,
            stream,
            &format!("/credits.v1.CreditsService/{method}"),
            message,
        )
    };
    let mut end_stream = |open: &mut BTreeMap<u32, (&'static str, Instant)>, stream: u32, end: StreamEnd| {
        if let Some((method, sent)) = open.remove(&stream) {
            done.push(RawCall {
                method,
                sent,
                ended: Instant::now(),
                end,
            });
        }
    };
    loop {
        if going_away.is_none() && !stop.is_cancelled() {
            let mut batch = Vec::new();
            while open.len() < depth {
                batch.extend(start_call(&mut open));
            }
            if !batch.is_empty() && connection.write(&batch).await.is_err() {
                break;
            }
        }
        if stop.is_cancelled() && open.is_empty() {
            break;
        }
        let frame = tokio::select! {
            frame = connection.read() => frame,
            () = tokio::time::sleep(Duration::from_millis(50)), if stop.is_cancelled() => continue,
        };
        let Some(frame) = frame else { break };
        let reply = match frame.kind {
            _ if frame.ends_stream() => {
                end_stream(&mut open, frame.stream, StreamEnd::Answered);
                Vec::new()
            }
            // Return the connection window the answer used, as every client does.
            DATA if !frame.payload.is_empty() => window_update(0, frame.payload.len() as u32),
            RST_STREAM => {
                let code = u32::from_be_bytes(frame.payload[..4].try_into().expect("4 bytes"));
                end_stream(
                    &mut open,
                    frame.stream,
                    StreamEnd::Cut(format!("RST_STREAM {code}")),
                );
                Vec::new()
            }
            SETTINGS if frame.flags & ACK == 0 => frame_ack(),
            // grpc-core writes the acknowledgement first, then the stream it had queued.
            PING if frame.flags & ACK == 0 => {
                let mut reply = pong(&frame.payload);
                if !stop.is_cancelled() {
                    reply.extend(start_call(&mut open));
                }
                reply
            }
            GOAWAY => {
                let (last, code) = frame.go_away();
                going_away = Some(last);
                let above: Vec<u32> = open.range(last + 1..).map(|(s, _)| *s).collect();
                for stream in above {
                    end_stream(&mut open, stream, StreamEnd::Unprocessed);
                }
                if code != 0 {
                    let cut: Vec<u32> = open.keys().copied().collect();
                    for stream in cut {
                        end_stream(&mut open, stream, StreamEnd::Cut(format!("GOAWAY error {code}")));
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        if !reply.is_empty() && connection.write(&reply).await.is_err() {
            break;
        }
    }
    let left: Vec<u32> = open.keys().copied().collect();
    for stream in left {
        end_stream(&mut open, stream, StreamEnd::Cut("connection closed".into()));
    }
    Ok(done)
}
