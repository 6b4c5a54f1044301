//! Which control-socket requests pass, and how they are rewritten. Pure: a
//! request's bytes in, the request to forward (or a refusal) out.

use std::fmt;

use swupdate_rs::msg::{IPC_MESSAGE_SIZE, Request};
use swupdate_rs::{MsgType, VersionsRange};

use crate::version::RunningVersion;

/// A request the gate does not forward; its text goes back in a NACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decides on one `ipc_message` from a client.
///
/// Passes the requests hearthd makes (`REQ_INSTALL`, `GET_STATUS`,
/// `GET_UPDATE_STATE`, `SET_UPDATE_STATE`, `SET_VERSIONS_RANGE`), each
/// decoded and encoded again, so only the fields SWUpdate's header defines
/// reach it. `SET_VERSIONS_RANGE` is rewritten: its minimum is raised to at
/// least the running version ([`RunningVersion::floor`]; an empty minimum,
/// which SWUpdate 2022.12 takes as "no downgrade check", becomes the running
/// version too) and its current version is the running one. Everything else
/// is refused: `POST_UPDATE` (runs SWUpdate's `-p` command), `SET_AES_KEY`,
/// `SWUPDATE_SUBPROCESS`, `REQ_INSTALL_EXT`, `NOTIFY_STREAM`,
/// `GET_HW_REVISION`, replies sent as requests, unknown and later types
/// (`SET_SWUPDATE_VARS`, `SET_DELTA_URL`), and anything of the wrong size or
/// magic.
pub fn filter(raw: &[u8], running: &RunningVersion) -> Result<Request, Refusal> {
    let refuse = |what: String| Refusal(format!("hearth-update-gate refuses {what}"));
    if raw.len() != IPC_MESSAGE_SIZE {
        return Err(refuse(format!(
            "a message of {} bytes (expected {IPC_MESSAGE_SIZE})",
            raw.len()
        )));
    }
    let request = Request::decode(raw).map_err(|e| refuse(format!("the request: {e}")))?;
    match request {
        Request::Install(_)
        | Request::GetStatus
        | Request::GetUpdateState
        | Request::SetUpdateState(_) => Ok(request),
        Request::SetVersionsRange(range) => Ok(Request::SetVersionsRange(VersionsRange {
            minimum: running.floor(&range.minimum),
            maximum: range.maximum,
            current: running.as_str().to_owned(),
        })),
        other => Err(refuse(format!("{:?}", other.msg_type()))),
    }
}

/// Whether an answer acknowledges an installation request, after which the
/// connection carries the image.
pub(crate) fn is_ack(reply: &[u8]) -> bool {
    swupdate_rs::msg::Reply::decode(reply)
        .ok()
        .and_then(|r| r.msg_type())
        == Some(MsgType::Ack)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use swupdate_rs::msg::layout;
    use swupdate_rs::{InstallRequest, UpdateState};

    fn running() -> RunningVersion {
        RunningVersion::new("1.2.0").unwrap()
    }

    fn range(minimum: &str, maximum: &str, current: &str) -> Request {
        Request::SetVersionsRange(VersionsRange {
            minimum: minimum.into(),
            maximum: maximum.into(),
            current: current.into(),
        })
    }

    fn raw_of_type(code: i32) -> Vec<u8> {
        let mut raw = Request::GetStatus.encode().unwrap().to_vec();
        raw[layout::TYPE..layout::TYPE + 4].copy_from_slice(&code.to_ne_bytes());
        raw
    }

    #[test]
    fn a_versions_range_can_never_lower_the_floor_below_the_running_version() {
        // The attack: a compromised hearthd opens the range to everything.
        let raw = range("0.0.0", "", "0.0.0").encode().unwrap();
        assert_eq!(
            filter(&raw, &running()).unwrap(),
            range("1.2.0", "", "1.2.0")
        );
        // An empty minimum switches SWUpdate's check off: not through the gate.
        let raw = range("", "", "").encode().unwrap();
        assert_eq!(
            filter(&raw, &running()).unwrap(),
            range("1.2.0", "", "1.2.0")
        );
        // What hearthd sends for an older release it was tricked into.
        let raw = range("1.1.0", "1.1.0", "1.1.0").encode().unwrap();
        assert_eq!(
            filter(&raw, &running()).unwrap(),
            range("1.2.0", "1.1.0", "1.2.0")
        );
    }

    #[test]
    fn a_versions_range_for_a_newer_release_passes_as_hearthd_sent_it() {
        let raw = range("1.3.0", "1.3.0", "1.2.0").encode().unwrap();
        assert_eq!(
            filter(&raw, &running()).unwrap(),
            range("1.3.0", "1.3.0", "1.2.0")
        );
    }

    #[test]
    fn the_requests_hearthd_makes_pass_unchanged() {
        let install = Request::Install(InstallRequest {
            info: "hearth 1.3.0".into(),
            software_set: "stable".into(),
            running_mode: "copy2".into(),
            len: 4096,
            ..InstallRequest::default()
        });
        for request in [
            install,
            Request::GetStatus,
            Request::GetUpdateState,
            Request::SetUpdateState(UpdateState::Ok),
            Request::SetUpdateState(UpdateState::Failed),
        ] {
            let raw = request.encode().unwrap();
            assert_eq!(filter(&raw, &running()).unwrap(), request);
            // Forwarded as re-encoded, i.e. the same bytes for a clean request.
            assert_eq!(filter(&raw, &running()).unwrap().encode().unwrap(), raw);
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for request in [
            Request::PostUpdate,
            Request::NotifyStream,
            Request::GetHwRevision,
        ] {
            let raw = request.encode().unwrap();
            let err = filter(&raw, &running()).unwrap_err();
            assert!(
                err.to_string().starts_with("hearth-update-gate refuses"),
                "{err}"
            );
        }
        // ACK, NACK, SWUPDATE_SUBPROCESS, SET_AES_KEY, REQ_INSTALL_EXT,
        // SET/GET_SWUPDATE_VARS, SET_DELTA_URL, and nonsense.
        for code in [1, 2, 5, 6, 9, 13, 14, 15, 16, -1, i32::MAX] {
            assert!(
                filter(&raw_of_type(code), &running()).is_err(),
                "type {code}"
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = Request::GetStatus.encode().unwrap();
        assert!(filter(&good[..good.len() - 1], &running()).is_err());
        assert!(filter(&[], &running()).is_err());
        let mut bad_magic = good;
        bad_magic[0] ^= 0xff;
        assert!(filter(&bad_magic, &running()).is_err());
        // SET_UPDATE_STATE with a state SWUpdate does not define.
        let mut bad_state = Request::SetUpdateState(UpdateState::Ok).encode().unwrap();
        bad_state[layout::DATA..layout::DATA + 4].copy_from_slice(&i32::from(b'9').to_ne_bytes());
        assert!(filter(&bad_state, &running()).is_err());
    }

    #[test]
    fn an_install_request_with_bytes_outside_its_fields_is_forwarded_without_them() {
        let request = Request::Install(InstallRequest::default());
        let mut raw = request.encode().unwrap();
        // Past the request inside `instmsg` (its `len` and `buf`).
        let tail = layout::DATA + layout::INSTMSG_BUF;
        raw[tail..tail + 4].copy_from_slice(b"junk");
        let forwarded = filter(&raw, &running()).unwrap().encode().unwrap();
        assert_eq!(forwarded, request.encode().unwrap());
    }

    #[test]
    fn only_an_ack_opens_the_image_stream() {
        use swupdate_rs::msg::Reply;
        assert!(is_ack(&Reply::encode(MsgType::Ack, &[])));
        assert!(!is_ack(&Reply::encode(MsgType::Nack, b"busy")));
        assert!(!is_ack(&[0u8; 16]));
    }
}
