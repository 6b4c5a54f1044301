//! Feeds arbitrary bytes to every decoder. They must never panic, and what
//! they accept must survive an encode/decode round trip where the crate
//! offers an encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swupdate_rs::msg::{IPC_MESSAGE_SIZE, Reply, Request};
use swupdate_rs::progress::{CONNECT_ACK_SIZE, ConnectAck, ProgressLayout, ProgressMessage};

fuzz_target!(|data: &[u8]| {
    // Control socket: any length, then exactly one message built from the
    // input (so the magic check does not hide the field decoders).
    let _ = Reply::decode(data);
    let _ = Request::decode(data);
    let mut msg = vec![0u8; IPC_MESSAGE_SIZE];
    let n = data.len().min(IPC_MESSAGE_SIZE - 4);
    msg[4..4 + n].copy_from_slice(&data[..n]);
    msg[0..4].copy_from_slice(&swupdate_rs::msg::IPC_MAGIC.to_ne_bytes());
    if let Ok(reply) = Reply::decode(&msg) {
        let _ = reply.msg_type();
        let _ = reply.text();
        let _ = reply.status();
        let _ = reply.notification();
        let _ = reply.update_state();
        let _ = reply.hw_revision();
        let _ = format!("{reply:?}");
    }
    if let Ok(request) = Request::decode(&msg) {
        // Strings were read up to a NUL from fixed fields, so they fit again.
        // (Invalid UTF-8 is replaced, which can make a string longer, so an
        // encode error is acceptable; a panic is not.)
        if let Ok(again) = request.encode() {
            assert_eq!(Request::decode(&again).ok(), Some(request));
        }
    }

    // Progress socket: both layouts, at their exact sizes.
    for layout in [ProgressLayout::V2022_12, ProgressLayout::Packed2025_12] {
        let _ = ProgressMessage::decode(layout, data);
        let mut frame = vec![0u8; layout.frame_size()];
        let n = data.len().min(frame.len());
        frame[..n].copy_from_slice(&data[..n]);
        if let Ok(m) = ProgressMessage::decode(layout, &frame) {
            if let Ok(again) = m.encode(layout) {
                assert_eq!(ProgressMessage::decode(layout, &again).ok(), Some(m));
            }
        }
    }
    let _ = ConnectAck::decode(data);
    if data.len() >= CONNECT_ACK_SIZE {
        if let Ok(ack) = ConnectAck::decode(&data[..CONNECT_ACK_SIZE]) {
            assert_eq!(ConnectAck::decode(&ack.encode()).ok(), Some(ack));
        }
    }
});
