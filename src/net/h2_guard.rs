//! The caller's side of an HTTP/2 connection, followed frame by frame just far enough to drop
//! the one frame that would make a draining server cut every call still in flight.
//!
//! Why it exists: in a graceful shutdown, h2 (0.4.20 and 0.4.21) sends GOAWAY(2^31-1) with a
//! PING, and when the caller acknowledges that PING it sends GOAWAY(last = L) and from then on
//! ignores streams above L, as RFC 9113 §6.8 allows. It ignores their HEADERS, DATA and
//! RST_STREAM, but takes a WINDOW_UPDATE on such a stream for a frame on an idle stream: a
//! connection error, GOAWAY(PROTOCOL_ERROR), which resets every stream on the connection. A
//! grpc-core caller (Python, C++, Ruby, PHP) writes its PING acknowledgement ahead of stream
//! frames it had queued, and raises a new stream's window right after its headers, so a rolling
//! deploy cut in-flight calls about one time in five.
//!
//! The guard drops exactly those frames: a WINDOW_UPDATE on a stream whose HEADERS came after
//! the acknowledgement of h2's shutdown PING. Every other byte passes unchanged, in order; a
//! connection that does not open with the HTTP/2 preface (HTTP/1.1) is passed through untouched.

/// What every HTTP/2 connection opens with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The opaque data of h2's shutdown PING (`Ping::SHUTDOWN` in h2). A test reads it off the
/// frames a draining server really sends, so an h2 that changes it fails that test.
pub const SHUTDOWN_PING: [u8; 8] = [0x0b, 0x7b, 0xa2, 0xf0, 0x8b, 0x9b, 0xfe, 0x54];

const HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const ACK: u8 = 0x1;

/// Where in the caller's byte stream the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Inside the preface, this many bytes matched so far.
    Preface(usize),
    /// Not HTTP/2: everything passes.
    Passthrough,
    /// Between frames: collecting a frame header.
    Header,
    /// Inside a frame's payload.
    Payload { left: usize, frame: Payload },
}

/// What to do with the payload being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Keep,
    Drop,
    /// A PING acknowledgement: its 8 bytes are collected to compare with [`SHUTDOWN_PING`].
    PingAck {
        data: [u8; 8],
        have: usize,
    },
}

/// Follows one connection's inbound bytes; see the module docs.
#[derive(Debug)]
pub(crate) struct InboundGuard {
    position: Position,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// The highest stream id whose HEADERS passed.
    highest_stream: u32,
    /// Set when the shutdown PING is acknowledged: streams above it are ignored by h2.
    cutoff: Option<u32>,
}

impl Default for InboundGuard {
    fn default() -> Self {
        Self {
            position: Position::Preface(0),
            header: [0; HEADER_LEN],
            header_len: 0,
            highest_stream: 0,
            cutoff: None,
        }
    }
}

impl InboundGuard {
    /// True once the connection is known not to be HTTP/2: callers may skip the guard.
    pub(crate) fn passes_everything(&self) -> bool {
        self.position == Position::Passthrough
    }

    /// Appends to `out` what of `input` reaches the server. A frame header split across calls
    /// is held until it is whole.
    pub(crate) fn filter(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.position {
                Position::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                Position::Preface(matched) => {
                    let take = input.len().min(PREFACE.len() - matched);
                    if input[..take] != PREFACE[matched..matched + take] {
                        self.position = Position::Passthrough;
                        continue;
                    }
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.position = if matched + take == PREFACE.len() {
                        Position::Header
                    } else {
                        Position::Preface(matched + take)
                    };
                }
                Position::Header => {
                    let take = input.len().min(HEADER_LEN - self.header_len);
                    self.header[self.header_len..self.header_len + take].copy_from_slice(&input[..take]);
                    self.header_len += take;
                    input = &input[take..];
                    if self.header_len == HEADER_LEN {
                        self.header_len = 0;
                        self.start_frame(out);
                    }
                }
                Position::Payload { left, frame } => {
                    let take = input.len().min(left);
                    let (chunk, rest) = input.split_at(take);
                    input = rest;
                    let frame = match frame {
                        Payload::Keep => {
                            out.extend_from_slice(chunk);
                            frame
                        }
                        Payload::Drop => frame,
                        Payload::PingAck { mut data, have } => {
                            out.extend_from_slice(chunk);
                            data[have..have + take].copy_from_slice(chunk);
                            Payload::PingAck {
                                data,
                                have: have + take,
                            }
                        }
                    };
                    self.position = if left == take {
                        self.end_frame(frame);
                        Position::Header
                    } else {
                        Position::Payload {
                            left: left - take,
                            frame,
                        }
                    };
                }
            }
        }
    }

    /// Decides what happens to the frame whose header was just read.
    fn start_frame(&mut self, out: &mut Vec<u8>) {
        let header = self.header;
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let frame = match kind {
            HEADERS => {
                self.highest_stream = self.highest_stream.max(stream);
                Payload::Keep
            }
            WINDOW_UPDATE if stream != 0 && self.cutoff.is_some_and(|cutoff| stream > cutoff) => {
                Payload::Drop
            }
            PING if flags & ACK != 0 && len == SHUTDOWN_PING.len() => Payload::PingAck {
                data: [0; 8],
                have: 0,
            },
            _ => Payload::Keep,
        };
        if frame != Payload::Drop {
            out.extend_from_slice(&header);
        }
        if len == 0 {
            self.end_frame(frame);
        } else {
            self.position = Position::Payload { left: len, frame };
        }
    }

    fn end_frame(&mut self, frame: Payload) {
        if let Payload::PingAck { data, .. } = frame
            && data == SHUTDOWN_PING
            && self.cutoff.is_none()
        {
            self.cutoff = Some(self.highest_stream);
        }
        self.position = Position::Header;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("small").to_be_bytes();
        let mut bytes = vec![len[1], len[2], len[3], kind, flags];
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn headers(stream: u32) -> Vec<u8> {
        frame(HEADERS, 0x4, stream, b"\x82\x86")
    }

    fn window_update(stream: u32) -> Vec<u8> {
        frame(WINDOW_UPDATE, 0, stream, &1000u32.to_be_bytes())
    }

    fn pong(data: [u8; 8]) -> Vec<u8> {
        frame(PING, ACK, 0, &data)
    }

    fn data(stream: u32) -> Vec<u8> {
        frame(0, 1, stream, b"\0\0\0\0\x02hi")
    }

    /// The conversation of the cut: a call on stream 1, the shutdown PING acknowledged, then
    /// stream 3 with its window raised.
    fn draining_conversation() -> (Vec<u8>, Vec<u8>) {
        let before = [
            PREFACE.to_vec(),
            frame(0x4, 0, 0, &[]),
            headers(1),
            window_update(1),
            data(1),
            window_update(0),
            pong(SHUTDOWN_PING),
            window_update(1),
        ]
        .concat();
        let after = [headers(3), window_update(3), data(3), window_update(0)].concat();
        (before, after)
    }

    fn run(guard: &mut InboundGuard, input: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            guard.filter(piece, &mut out);
        }
        out
    }

    #[test]
    fn a_window_update_on_a_stream_opened_after_the_shutdown_ping_is_dropped() {
        let (before, after) = draining_conversation();
        let out = run(
            &mut InboundGuard::default(),
            &[before.clone(), after].concat(),
            4096,
        );
        let expected = [before, headers(3), data(3), window_update(0)].concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn before_the_shutdown_ping_every_byte_passes() {
        let input = [
            PREFACE.to_vec(),
            headers(1),
            window_update(1),
            pong([1; 8]),
            headers(3),
            window_update(3),
        ]
        .concat();
        assert_eq!(run(&mut InboundGuard::default(), &input, 4096), input);
    }

    #[test]
    fn http1_passes_untouched() {
        let mut guard = InboundGuard::default();
        let input = b"POST /account/stripe-webhook/ HTTP/1.1\r\nHost: x\r\n\r\n{}";
        assert_eq!(run(&mut guard, input, 3), input);
        assert!(guard.passes_everything());
    }

    proptest! {
        /// However the bytes are split into reads, the output is the same.
        #[test]
        fn the_output_does_not_depend_on_how_reads_split_the_bytes(chunk in 1usize..64) {
            let (before, after) = draining_conversation();
            let input = [before, after].concat();
            let whole = run(&mut InboundGuard::default(), &input, input.len());
            prop_assert_eq!(run(&mut InboundGuard::default(), &input, chunk), whole);
        }
    }
}
