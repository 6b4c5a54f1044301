use std::process::ExitCode;

fn main() -> ExitCode {
    let command = match hearthd::cli::parse(std::env::args_os()) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("hearthd: {error}\n\n{}", hearthd::cli::USAGE);
            return ExitCode::from(2);
        }
    };
    hearthd::logging::init();
    hearthd::memory::return_large_blocks_to_the_kernel();
    match command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hearthd: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
