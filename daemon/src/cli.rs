//! The command line: `hearthd [run|check-config|version] [--config FILE]...`.

use std::ffi::OsString;

use crate::config::{Config, Layer};

pub const USAGE: &str = "\
Usage: hearthd [COMMAND] [--config FILE]...

Commands:
  run            serve the device (default)
  info [--json]  print the product, support period and how to report a
                 security problem (--json: the MQTT device-info payload)
  check-config   read the configuration and the vendor file, report the
                 first problem, and exit
  factory-reset  erase the owner's password, settings and the TLS key; the
                 next start is a first boot with a new setup code. Run it
                 only while hearthd is stopped (the reset control's unit does)
  version        print the firmware version

Options:
  --config FILE  read FILE as a configuration layer; repeat to stack layers,
                 later ones overriding earlier ones. Without it hearthd reads
                 /usr/lib/hearth/hearth.toml, then /etc/hearth/hearth.toml,
                 then /data/factory/hearth.toml.
  -h, --help     show this help

Environment:
  HEARTH_LOG     log level, e.g. info (default), debug, hearthd=trace";

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Vec<Layer>),
    Info { layers: Vec<Layer>, json: bool },
    CheckConfig(Vec<Layer>),
    FactoryReset(Vec<Layer>),
    Version,
    Help,
}

impl PartialEq for Layer {
    fn eq(&self, other: &Layer) -> bool {
        self.path == other.path
            && self.required == other.required
            && self.per_device_only == other.per_device_only
    }
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut command = None;
    let mut layers = Vec::new();
    let mut json = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => layers.push(Layer::explicit(parser.value()?)),
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(Command::Help),
            Value(word) if command.is_none() => command = Some(word.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    if layers.is_empty() {
        layers = Layer::system();
    }
    match command.as_deref() {
        None | Some("run") => Ok(Command::Run(layers)),
        Some("info") => Ok(Command::Info { layers, json }),
        Some("check-config") => Ok(Command::CheckConfig(layers)),
        Some("factory-reset") => Ok(Command::FactoryReset(layers)),
        Some("version") => Ok(Command::Version),
        Some(other) => Err(format!("unknown command `{other}`").into()),
    }
}

impl Command {
    pub fn run(self) -> Result<(), crate::Error> {
        match self {
            Command::Run(layers) => crate::run(&layers),
            Command::Info { layers, json } => {
                let config = Config::load(&layers)?;
                let vendor = crate::load_vendor(&config)?;
                let marker = crate::development_keys(&config);
                crate::console::show(&crate::info(&vendor, marker, json));
                Ok(())
            }
            Command::CheckConfig(layers) => {
                let config = Config::load(&layers)?;
                crate::load_vendor(&config)?;
                crate::console::show("configuration and vendor file OK");
                Ok(())
            }
            Command::FactoryReset(layers) => crate::factory_reset(&Config::load(&layers)?),
            Command::Version => {
                crate::console::show(crate::FIRMWARE_VERSION);
                Ok(())
            }
            Command::Help => {
                crate::console::show(USAGE);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Command, lexopt::Error> {
        parse(
            std::iter::once("hearthd")
                .chain(words.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn no_arguments_runs_with_the_system_layers() {
        assert_eq!(
            parse_words(&[]).expect("parse"),
            Command::Run(Layer::system())
        );
    }

    #[test]
    fn config_flags_stack_in_order() {
        let command =
            parse_words(&["run", "--config", "a.toml", "--config", "b.toml"]).expect("parse");
        assert_eq!(
            command,
            Command::Run(vec![Layer::explicit("a.toml"), Layer::explicit("b.toml")])
        );
    }

    #[test]
    fn an_unknown_command_is_refused() {
        let err = parse_words(&["frobnicate"])
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown command `frobnicate`"), "{err}");
    }
}
