//! The device's hardware: the plug's relay and the reset button, on GPIO
//! lines driven and read through the Linux GPIO character device
//! (`/dev/gpiochipN`, uAPI v2, through `gpiocdev`).
//!
//! Both are optional (`[board]` in the configuration). The QEMU x86 image
//! has no GPIO: there the relay is the state record alone, and the reset
//! control is the host-only drive (`hearth-factory-reset.service`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gpiocdev::Request;
use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, Offset, Value};
use serde::Deserialize;

/// `[board]`: which GPIO lines the relay and the reset button are on.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoardConfig {
    /// The relay's line: a line name from the device tree (`"GPIO17"` on a
    /// Raspberry Pi) or `"/dev/gpiochip0:17"`. Absent: no relay.
    pub relay: Option<LineSpec>,
    /// The relay is on while the line is low.
    pub relay_active_low: bool,
    /// The reset button's line, written like `relay`. Absent: no button.
    pub reset_button: Option<LineSpec>,
    /// A pressed button pulls the line low (a button to ground with a
    /// pull-up, the usual wiring).
    pub reset_button_active_low: bool,
    /// The line's bias: `"pull-up"`, `"pull-down"`, `"disabled"`, or
    /// `"as-is"` (leave what the device tree set).
    pub reset_button_bias: BiasSetting,
    /// How long the button must be held for a factory reset; 0 means any
    /// press (for a recessed pin-hole button).
    pub reset_hold_secs: u32,
}

impl Default for BoardConfig {
    fn default() -> Self {
        BoardConfig {
            relay: None,
            relay_active_low: false,
            reset_button: None,
            reset_button_active_low: true,
            reset_button_bias: BiasSetting::PullUp,
            reset_hold_secs: 10,
        }
    }
}

/// A GPIO line: by name, or by chip and offset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LineSpec {
    Named(String),
    OnChip { chip: PathBuf, offset: Offset },
}

impl TryFrom<String> for LineSpec {
    type Error = String;

    fn try_from(text: String) -> Result<LineSpec, String> {
        let Some((chip, offset)) = text.rsplit_once(':') else {
            return match text.is_empty() {
                true => Err("an empty GPIO line name".into()),
                false => Ok(LineSpec::Named(text)),
            };
        };
        let offset = offset.parse().map_err(|_| {
            format!(
                "{text:?}: write a line name (\"GPIO17\") or CHIP:OFFSET (\"/dev/gpiochip0:17\")"
            )
        })?;
        Ok(LineSpec::OnChip {
            chip: chip.into(),
            offset,
        })
    }
}

impl std::fmt::Display for LineSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineSpec::Named(name) => f.write_str(name),
            LineSpec::OnChip { chip, offset } => write!(f, "{}:{offset}", chip.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BiasSetting {
    AsIs,
    PullUp,
    PullDown,
    Disabled,
}

impl BiasSetting {
    fn bias(self) -> Option<Bias> {
        match self {
            BiasSetting::AsIs => None,
            BiasSetting::PullUp => Some(Bias::PullUp),
            BiasSetting::PullDown => Some(Bias::PullDown),
            BiasSetting::Disabled => Some(Bias::Disabled),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error(
        "no GPIO line is named {0:?}. Check [board] in the configuration against `gpioinfo` on the device"
    )]
    NoSuchLine(String),
    #[error(
        "cannot use GPIO line {line} for the {what}: {source}. Check [board] in the configuration, and \
         that hearthd may open the GPIO chip (the hearth-gpio group)"
    )]
    Line {
        line: LineSpec,
        what: &'static str,
        source: gpiocdev::Error,
    },
}

fn locate(spec: &LineSpec) -> Result<(PathBuf, Offset), BoardError> {
    match spec {
        LineSpec::OnChip { chip, offset } => Ok((chip.clone(), *offset)),
        LineSpec::Named(name) => gpiocdev::find_named_line(name)
            .map(|found| (found.chip, found.info.offset))
            .ok_or_else(|| BoardError::NoSuchLine(name.clone())),
    }
}

/// The plug's relay: an output line hearthd holds for as long as it runs.
#[derive(Debug)]
pub struct Relay {
    spec: LineSpec,
    request: Request,
    offset: Offset,
}

impl Relay {
    /// Takes the line and drives it to `on` at once.
    pub fn open(spec: &LineSpec, active_low: bool, on: bool) -> Result<Relay, BoardError> {
        let error = |source| BoardError::Line {
            line: spec.clone(),
            what: "relay",
            source,
        };
        let (chip, offset) = locate(spec)?;
        let mut builder = Request::builder();
        builder
            .on_chip(chip)
            .with_consumer("hearthd relay")
            .with_line(offset)
            .as_output(value(on));
        if active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(error)?;
        Ok(Relay {
            spec: spec.clone(),
            request,
            offset,
        })
    }

    pub fn set(&self, on: bool) -> Result<(), BoardError> {
        self.request
            .set_value(self.offset, value(on))
            .map_err(|source| BoardError::Line {
                line: self.spec.clone(),
                what: "relay",
                source,
            })
    }
}

fn value(active: bool) -> Value {
    if active {
        Value::Active
    } else {
        Value::Inactive
    }
}

/// The reset button: an input line with edge events.
#[derive(Debug)]
pub struct ResetButton {
    spec: LineSpec,
    request: Request,
    offset: Offset,
    hold: Duration,
}

impl ResetButton {
    /// Takes the line (so a misconfigured button fails at start, not when
    /// someone needs it).
    pub fn open(config: &BoardConfig, spec: &LineSpec) -> Result<ResetButton, BoardError> {
        let error = |source| BoardError::Line {
            line: spec.clone(),
            what: "reset button",
            source,
        };
        let (chip, offset) = locate(spec)?;
        let mut builder = Request::builder();
        builder
            .on_chip(chip)
            .with_consumer("hearthd reset button")
            .with_line(offset)
            .as_input()
            .with_bias(config.reset_button_bias.bias())
            .with_edge_detection(EdgeDetection::BothEdges)
            // Contacts bounce for a few milliseconds.
            .with_debounce_period(Duration::from_millis(20));
        if config.reset_button_active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(error)?;
        Ok(ResetButton {
            spec: spec.clone(),
            request,
            offset,
            hold: Duration::from_secs(config.reset_hold_secs.into()),
        })
    }

    /// Watches the button on its own thread (reads block) and sends once
    /// it has been held long enough. A read error stops the watch, logged:
    /// the device goes on without its button rather than stopping.
    pub fn watch(self, held: tokio::sync::oneshot::Sender<()>) {
        std::thread::spawn(move || match self.wait_for_hold() {
            Ok(()) => {
                let _ = held.send(());
            }
            Err(source) => tracing::error!(
                line = %self.spec,
                %source,
                "the reset button cannot be read any more; a factory reset needs a restart first"
            ),
        });
    }

    fn wait_for_hold(&self) -> Result<(), gpiocdev::Error> {
        let mut hold = Hold::new(self.hold);
        // Held down while the device started: that counts from now.
        if self.request.value(self.offset)? == Value::Active {
            hold.edge(true, Instant::now());
            tracing::info!(line = %self.spec, "reset button held");
        }
        loop {
            if hold.is_due(Instant::now()) {
                return Ok(());
            }
            let edge_waiting = match hold.deadline() {
                Some(deadline) => self
                    .request
                    .wait_edge_event(deadline.saturating_duration_since(Instant::now()))?,
                None => true, // read_edge_event blocks until one comes
            };
            if edge_waiting {
                let event = self.request.read_edge_event()?;
                let pressed = event.kind == EdgeKind::Rising;
                hold.edge(pressed, Instant::now());
                tracing::info!(line = %self.spec, pressed, "reset button");
            }
        }
    }
}

/// The hold rule, apart from the hardware: a press starts the clock, a
/// release stops it, and the reset is due once the clock reaches `hold`.
#[derive(Debug)]
struct Hold {
    hold: Duration,
    pressed_since: Option<Instant>,
}

impl Hold {
    fn new(hold: Duration) -> Hold {
        Hold {
            hold,
            pressed_since: None,
        }
    }

    fn edge(&mut self, pressed: bool, now: Instant) {
        self.pressed_since = match (pressed, self.pressed_since) {
            (true, Some(since)) => Some(since), // a repeated press edge
            (true, None) => Some(now),
            (false, _) => None,
        };
    }

    fn deadline(&self) -> Option<Instant> {
        self.pressed_since.map(|since| since + self.hold)
    }

    fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_specs_are_names_or_chip_and_offset() {
        assert_eq!(
            LineSpec::try_from("GPIO17".to_owned()),
            Ok(LineSpec::Named("GPIO17".into()))
        );
        assert_eq!(
            LineSpec::try_from("/dev/gpiochip0:17".to_owned()),
            Ok(LineSpec::OnChip {
                chip: "/dev/gpiochip0".into(),
                offset: 17
            })
        );
        assert!(LineSpec::try_from("/dev/gpiochip0:x".to_owned()).is_err());
        assert!(LineSpec::try_from(String::new()).is_err());
    }

    #[test]
    fn a_reset_needs_the_button_held_for_the_whole_hold_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut hold = Hold::new(s(10));
        assert!(!hold.is_due(t0 + s(100)), "never pressed");
        hold.edge(true, t0);
        assert!(!hold.is_due(t0 + s(9)));
        hold.edge(false, t0 + s(9));
        assert!(!hold.is_due(t0 + s(20)), "released before 10 s");
        hold.edge(true, t0 + s(30));
        hold.edge(true, t0 + s(35)); // a bounce does not restart the clock
        assert_eq!(hold.deadline(), Some(t0 + s(40)));
        assert!(hold.is_due(t0 + s(40)));
    }

    #[test]
    fn a_zero_hold_time_resets_on_any_press() {
        let t0 = Instant::now();
        let mut hold = Hold::new(Duration::ZERO);
        hold.edge(true, t0);
        assert!(hold.is_due(t0));
    }

    #[test]
    fn the_config_defaults_suit_a_button_to_ground() {
        let config: BoardConfig = toml::from_str("reset_button = \"GPIO27\"").expect("parse");
        assert_eq!(config.reset_button, Some(LineSpec::Named("GPIO27".into())));
        assert!(config.reset_button_active_low);
        assert_eq!(config.reset_button_bias, BiasSetting::PullUp);
        assert_eq!(config.reset_hold_secs, 10);
        assert!(config.relay.is_none());
    }
}
