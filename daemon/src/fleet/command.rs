//! Commands that arrive on the device's command topic.
//!
//! A command is a small JSON object, `{"command": "plug", "on": true}`,
//! with an optional `"id"` the sender picks and finds again in the status
//! topic. Anything else is refused with a reason before it can change
//! anything.

use serde::Deserialize;

/// Larger command payloads are refused unread. A real command is a few
/// dozen bytes; the cap keeps a misbehaving sender from making the device
/// parse megabytes.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// Plug commands carried out per minute at most (a burst of this many,
/// then one every `60 / PLUG_COMMANDS_PER_MINUTE` s): a relay is a
/// mechanical part, and a flood of switching is an attack on the
/// appliance behind it.
pub const PLUG_COMMANDS_PER_MINUTE: u32 = 10;

/// The rate limit of plug commands: a token bucket.
#[derive(Debug)]
pub struct PlugRate {
    tokens: f64,
    last: std::time::Instant,
}

impl PlugRate {
    pub fn new(now: std::time::Instant) -> PlugRate {
        PlugRate {
            tokens: f64::from(PLUG_COMMANDS_PER_MINUTE),
            last: now,
        }
    }

    /// Takes one command's token, or refuses.
    pub fn take(&mut self, now: std::time::Instant) -> Result<(), Refusal> {
        let per_second = f64::from(PLUG_COMMANDS_PER_MINUTE) / 60.0;
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * per_second;
        self.tokens = (self.tokens + refill).min(f64::from(PLUG_COMMANDS_PER_MINUTE));
        self.last = now;
        if self.tokens < 1.0 {
            return Err(Refusal::TooFrequent(PLUG_COMMANDS_PER_MINUTE));
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

/// The longest sender-chosen id echoed back in the status.
const MAX_ID_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The sender's correlation id, echoed in the status.
    pub id: Option<String>,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Switch the plug on or off, through `Plug::switch`.
    Plug { on: bool },
}

/// Why a command was not carried out. The code is machine-readable and
/// published in the status; the message is a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the command is {size} bytes; commands are at most {MAX_COMMAND_BYTES} bytes. Send a smaller command."
    )]
    TooLarge { size: usize },
    #[error(
        "the command came from the broker's retained store; send commands without the retain flag, or they replay at every reconnect"
    )]
    Retained,
    #[error(
        "the command is not valid JSON: {0}. Send a JSON object such as {{\"command\":\"plug\",\"on\":true}}."
    )]
    BadJson(String),
    #[error("unknown command {0:?}; this device understands \"plug\"")]
    Unknown(String),
    #[error(
        "the command is missing its \"command\" field; send e.g. {{\"command\":\"plug\",\"on\":true}}"
    )]
    MissingCommand,
    #[error("the plug command needs \"on\": true or false")]
    BadPlugArgument,
    #[error(
        "device not set up: the owner must claim it on its web page before it accepts commands"
    )]
    NotSetUp,
    #[error(
        "the owner has not allowed plug commands from the vendor's service; they can turn them on \
         in the device's Settings page"
    )]
    NotAllowed,
    #[error("too many plug commands; at most {0} a minute are carried out. Try again shortly.")]
    TooFrequent(u32),
    #[error(
        "the device's credentials are damaged; it accepts no commands until it is factory-reset"
    )]
    Broken,
    #[error("the plug could not be switched: {0}")]
    Failed(String),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Retained => "retained",
            Refusal::BadJson(_) => "bad_json",
            Refusal::Unknown(_) => "unknown_command",
            Refusal::MissingCommand => "missing_command",
            Refusal::BadPlugArgument => "bad_argument",
            Refusal::NotSetUp => "not_set_up",
            Refusal::NotAllowed => "not_allowed",
            Refusal::TooFrequent(_) => "too_frequent",
            Refusal::Broken => "broken",
            Refusal::Failed(_) => "failed",
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    command: Option<String>,
    id: Option<serde_json::Value>,
    on: Option<serde_json::Value>,
}

/// Parses a command payload. `retained` is the MQTT retain flag as
/// delivered: set when the broker replays a retained message at subscribe
/// time, which would run the command again at every reconnect.
///
/// On refusal the sender's id is still returned when it could be read, so
/// the status can say which command was refused.
pub fn parse(payload: &[u8], retained: bool) -> Result<Command, (Option<String>, Refusal)> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err((
            None,
            Refusal::TooLarge {
                size: payload.len(),
            },
        ));
    }
    let raw: Raw =
        serde_json::from_slice(payload).map_err(|e| (None, Refusal::BadJson(e.to_string())))?;
    let id = raw.id.map(|v| {
        let text = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        text.chars()
            .filter(|c| !c.is_control())
            .take(MAX_ID_CHARS)
            .collect()
    });
    if retained {
        return Err((id, Refusal::Retained));
    }
    let action = match raw.command.as_deref() {
        None => return Err((id, Refusal::MissingCommand)),
        Some("plug") => match raw.on {
            Some(serde_json::Value::Bool(on)) => Action::Plug { on },
            _ => return Err((id, Refusal::BadPlugArgument)),
        },
        Some(other) => {
            let shown: String = other.chars().filter(|c| !c.is_control()).take(40).collect();
            return Err((id, Refusal::Unknown(shown)));
        }
    };
    Ok(Command { id, action })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plug_commands_are_rate_limited_and_the_limit_refills() {
        let t0 = std::time::Instant::now();
        let mut rate = PlugRate::new(t0);
        for _ in 0..PLUG_COMMANDS_PER_MINUTE {
            assert!(rate.take(t0).is_ok());
        }
        assert_eq!(
            rate.take(t0),
            Err(Refusal::TooFrequent(PLUG_COMMANDS_PER_MINUTE))
        );
        let later = t0 + std::time::Duration::from_secs(6);
        assert!(rate.take(later).is_ok(), "one more after 6 s");
        assert!(rate.take(later).is_err());
    }

    fn refusal(payload: &[u8]) -> Refusal {
        parse(payload, false).expect_err("refused").1
    }

    #[test]
    fn plug_commands_parse_with_and_without_an_id() {
        assert_eq!(
            parse(br#"{"command":"plug","on":true}"#, false),
            Ok(Command {
                id: None,
                action: Action::Plug { on: true }
            })
        );
        assert_eq!(
            parse(br#"{"command":"plug","on":false,"id":"abc-1"}"#, false),
            Ok(Command {
                id: Some("abc-1".into()),
                action: Action::Plug { on: false }
            })
        );
        let numeric = parse(br#"{"command":"plug","on":false,"id":42}"#, false).expect("ok");
        assert_eq!(numeric.id.as_deref(), Some("42"));
    }

    #[test]
    fn malformed_commands_are_refused_with_a_reason() {
        assert_eq!(refusal(b"").code(), "bad_json");
        assert_eq!(refusal(b"ON").code(), "bad_json");
        assert_eq!(refusal(b"[1,2]").code(), "bad_json");
        assert_eq!(refusal(b"\xff\xfe").code(), "bad_json");
        assert_eq!(refusal(br#"{"on":true}"#).code(), "missing_command");
        assert_eq!(
            refusal(br#"{"command":"reboot"}"#).code(),
            "unknown_command"
        );
        assert_eq!(refusal(br#"{"command":"plug"}"#).code(), "bad_argument");
        assert_eq!(
            refusal(br#"{"command":"plug","on":"yes"}"#).code(),
            "bad_argument"
        );
        assert_eq!(
            refusal(br#"{"command":"plug","on":1}"#).code(),
            "bad_argument"
        );
        assert_eq!(refusal(br#"{"command":7,"on":true}"#).code(), "bad_json");
    }

    #[test]
    fn an_oversized_command_is_refused_before_it_is_parsed() {
        let mut big = br#"{"command":"plug","on":true,"pad":""#.to_vec();
        big.resize(MAX_COMMAND_BYTES + 1, b'x');
        let (_, why) = parse(&big, false).expect_err("too large");
        assert_eq!(
            why,
            Refusal::TooLarge {
                size: MAX_COMMAND_BYTES + 1
            }
        );
    }

    #[test]
    fn a_retained_command_is_refused_but_keeps_its_id() {
        let (id, why) =
            parse(br#"{"command":"plug","on":true,"id":"r1"}"#, true).expect_err("retained");
        assert_eq!(why, Refusal::Retained);
        assert_eq!(id.as_deref(), Some("r1"));
    }

    #[test]
    fn echoed_text_is_bounded_and_has_no_control_characters() {
        let long_id = format!(r#"{{"command":"nope","id":"a\nb{}"}}"#, "x".repeat(500));
        let (id, why) = parse(long_id.as_bytes(), false).expect_err("unknown");
        let id = id.expect("id");
        assert!(id.chars().count() <= MAX_ID_CHARS);
        assert!(!id.contains('\n'));
        assert_eq!(why.code(), "unknown_command");
        let (_, why) = parse(
            format!(r#"{{"command":"{}\u0007"}}"#, "z".repeat(300)).as_bytes(),
            false,
        )
        .expect_err("unknown");
        let Refusal::Unknown(shown) = why else {
            panic!("{why:?}")
        };
        assert_eq!(shown.len(), 40);
    }
}
