//! `hearth-release`: see `hearth-release help` and docs/update-security.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    let parser = lexopt::Parser::from_env();
    match hearth_release::run(parser) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth-release: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
