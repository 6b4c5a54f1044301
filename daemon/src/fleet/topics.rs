//! The topic scheme (docs/mqtt.md), built from checked names.
//!
//! Every name that becomes a topic level is a [`Segment`]: it cannot hold
//! `/`, `+`, `#` or control characters, so a device id can never widen a
//! subscription or reach into another device's topics.

use std::fmt;

/// One topic level: 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
///
/// The same rule makes the value safe as a certificate CN and as a
/// mosquitto `%u` pattern substitution (mosquitto refuses `+` and `#` in a
/// username, and `/` would add a level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment(String);

impl Segment {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Segment {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(format!(
                "expected 1 to {} characters, got {}",
                Self::MAX_LEN,
                value.len()
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "{bad:?} is not allowed; use only letters, digits, '.', '_' and '-'"
            ));
        }
        if value.starts_with('.') {
            return Err("must not start with '.'".to_owned());
        }
        Ok(Segment(value.to_owned()))
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The topics one device uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `<root>/<model>/release`: the retained signed manifest (subscribed).
    pub release: String,
    /// `<root>/device/<id>/cmd`: commands for this device (subscribed).
    pub cmd: String,
    /// `<root>/device/<id>/status`: retained status; the last will lands here.
    pub status: String,
    /// `<root>/device/<id>/info`: the retained device-info payload.
    pub info: String,
    /// `<prefix>/switch/<id>/config`: Home Assistant discovery for the plug.
    pub discovery: Option<String>,
}

/// What an incoming message is, by its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    Release,
    Command,
    /// Anything else: the broker should never send it (we never subscribe
    /// to it), so it is logged and dropped.
    Unexpected,
}

impl Topics {
    pub fn new(
        root: &Segment,
        model: &Segment,
        device: &Segment,
        discovery_prefix: Option<&Segment>,
    ) -> Topics {
        let device_root = format!("{root}/device/{device}");
        Topics {
            release: format!("{root}/{model}/release"),
            cmd: format!("{device_root}/cmd"),
            status: format!("{device_root}/status"),
            info: format!("{device_root}/info"),
            discovery: discovery_prefix.map(|p| format!("{p}/switch/{device}/config")),
        }
    }

    pub fn classify(&self, topic: &str) -> Incoming {
        if topic == self.release {
            Incoming::Release
        } else if topic == self.cmd {
            Incoming::Command
        } else {
            Incoming::Unexpected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(s: &str) -> Segment {
        Segment::try_from(s).expect("valid segment")
    }

    #[test]
    fn topics_follow_the_documented_scheme() {
        let topics = Topics::new(
            &seg("hearth"),
            &seg("HRH-1"),
            &seg("hrh1-0001"),
            Some(&seg("homeassistant")),
        );
        assert_eq!(topics.release, "hearth/HRH-1/release");
        assert_eq!(topics.cmd, "hearth/device/hrh1-0001/cmd");
        assert_eq!(topics.status, "hearth/device/hrh1-0001/status");
        assert_eq!(topics.info, "hearth/device/hrh1-0001/info");
        assert_eq!(
            topics.discovery.as_deref(),
            Some("homeassistant/switch/hrh1-0001/config")
        );
        let none = Topics::new(&seg("hearth"), &seg("m"), &seg("d"), None);
        assert_eq!(none.discovery, None);
    }

    #[test]
    fn incoming_topics_are_classified_exactly() {
        let topics = Topics::new(&seg("hearth"), &seg("m"), &seg("d"), None);
        assert_eq!(topics.classify("hearth/m/release"), Incoming::Release);
        assert_eq!(topics.classify("hearth/device/d/cmd"), Incoming::Command);
        for other in [
            "hearth/device/d/cmd/",
            "hearth/device/e/cmd",
            "hearth/device/d/status",
            "hearth/n/release",
            "Hearth/m/release",
            "",
        ] {
            assert_eq!(topics.classify(other), Incoming::Unexpected, "{other:?}");
        }
    }

    #[test]
    fn a_segment_cannot_widen_or_split_a_topic() {
        for bad in [
            "", "+", "#", "a/b", "a+", "dev#", "a b", "é", "a\nb", "a\0b", ".", "..", ".hidden",
        ] {
            assert!(Segment::try_from(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Segment::try_from("x".repeat(65).as_str()).is_err());
        for good in ["hrh1-0001", "HRH-1", "a.b_c-d", &"x".repeat(64)] {
            assert_eq!(seg(good).as_str(), good);
        }
    }
}
