//! The command line: `hearthd [run|check-config|version] [--config FILE]...`.

use std::ffi::OsString;

use crate::config::{Config, Layer};

pub const USAGE: &str = "\
Usage: hearthd [COMMAND] [--config FILE]...

Commands:
  run            serve the device (default)
  check-config   read the configuration, report the first problem, and exit
  version        print the firmware version

Options:
  --config FILE  read FILE as a configuration layer; repeat to stack layers,
                 later ones overriding earlier ones. Without it hearthd reads
                 /usr/lib/hearth/hearth.toml, then /etc/hearth/hearth.toml.
  -h, --help     show this help

Environment:
  HEARTH_LOG     log level, e.g. info (default), debug, hearthd=trace";

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Vec<Layer>),
    CheckConfig(Vec<Layer>),
    Version,
    Help,
}

impl PartialEq for Layer {
    fn eq(&self, other: &Layer) -> bool {
        self.path == other.path && self.required == other.required
    }
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut command = None;
    let mut layers = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => layers.push(Layer::explicit(parser.value()?)),
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
        Some("check-config") => Ok(Command::CheckConfig(layers)),
        Some("version") => Ok(Command::Version),
        Some(other) => Err(format!("unknown command `{other}`").into()),
    }
}

impl Command {
    pub fn run(self) -> Result<(), crate::Error> {
        match self {
            Command::Run(layers) => crate::run(&layers),
            Command::CheckConfig(layers) => {
                Config::load(&layers)?;
                crate::console::show("configuration OK");
                Ok(())
            }
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
