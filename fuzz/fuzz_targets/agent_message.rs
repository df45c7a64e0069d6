//! Fuzz the agent protocol decoder: arbitrary bytes from a (possibly hostile) guest must give a
//! message or an error, never a panic, a hang or an allocation beyond the frame limit.
#![no_main]

use std::io::{Cursor, Read, Write};

use isola_proto::{frame, Transport, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzz input; discards writes.
struct Input(Cursor<Vec<u8>>);
impl Read for Input {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(b)
    }
}
impl Write for Input {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // Slice decoder: a decoded frame never claims more bytes than it had, and what decodes
    // re-encodes to the same message (or, rarely, grows past the limit: `-0` prints as `-0.0`).
    let mut rest = data;
    while let Ok((msg, used)) = frame::decode(rest) {
        assert!(used <= rest.len() && used >= frame::HEADER_LEN);
        match frame::encode(&msg) {
            Ok(again) => {
                assert!(again.len() <= frame::HEADER_LEN + MAX_PAYLOAD as usize);
                let (back, _) = frame::decode(&again).expect("an encoded message decodes");
                assert_eq!(back, msg);
            }
            Err(e) => assert!(matches!(e, frame::FrameError::TooLarge { .. }), "{e}"),
        }
        rest = &rest[used..];
    }
    // Payload decoder alone.
    let _ = frame::decode_payload(data);
    // Streaming transport: reads until an error (EOF included).
    let mut t = Transport::new(Input(Cursor::new(data.to_vec())));
    while t.recv().is_ok() {}
});
