//! `hearth-vendor`: build-time checks and generators for the vendor file.
//!
//! Exit codes: 0 success; 1 the vendor file cannot be read or is invalid;
//! 2 usage error; 3 the output could not be produced (write error, PDF tool
//! missing or failing).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use disclosure::statement::{BuildInfo, Format};
use disclosure::{VendorFile, os_release, statement};
use time::Date;

const USAGE: &str = "\
hearth-vendor: check the Hearth vendor file and generate what derives from it

Usage:
  hearth-vendor check FILE [--today YYYY-MM-DD]
  hearth-vendor os-release FILE --version V
  hearth-vendor security-txt FILE [--today YYYY-MM-DD]
  hearth-vendor statement FILE --format md|html|pdf --version V --batch B [--output PATH]
  hearth-vendor --help

check         validate FILE (run by the Yocto layer and the dev image at build time)
os-release    print the /etc/os-release fragment for firmware version V
security-txt  print the security.txt the device would serve today
statement     print the PSTI statement of compliance (pdf needs --output and
              the `weasyprint` program: apt-get install weasyprint)

--today overrides the current date (UTC), e.g. for reproducible output.

Exit codes: 0 success, 1 vendor file unreadable or invalid, 2 usage error,
3 output could not be written or converted.
";

enum Fail {
    Vendor(String),
    Usage(String),
    Output(String),
}

impl From<lexopt::Error> for Fail {
    fn from(e: lexopt::Error) -> Self {
        Fail::Usage(e.to_string())
    }
}

struct Args {
    command: String,
    file: PathBuf,
    today: Option<Date>,
    version: Option<String>,
    batch: Option<String>,
    format: Option<String>,
    output: Option<PathBuf>,
}

fn parse_date(s: &str) -> Result<Date, Fail> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt)
        .map_err(|_| Fail::Usage(format!("--today {s}: write the date as YYYY-MM-DD")))
}

fn parse_args() -> Result<Option<Args>, Fail> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut positional = Vec::new();
    let (mut today, mut version, mut batch, mut format, mut output) =
        (None, None, None, None, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("today") => today = Some(parse_date(&p.value()?.string()?)?),
            Long("version") => version = Some(p.value()?.string()?),
            Long("batch") => batch = Some(p.value()?.string()?),
            Long("format") => format = Some(p.value()?.string()?),
            Long("output") | Short('o') => output = Some(PathBuf::from(p.value()?)),
            Value(v) => positional.push(v),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut positional = positional.into_iter();
    let command = positional
        .next()
        .ok_or_else(|| Fail::Usage("missing subcommand".to_owned()))?
        .string()?;
    let file = PathBuf::from(
        positional
            .next()
            .ok_or_else(|| Fail::Usage(format!("{command}: missing the vendor FILE")))?,
    );
    if let Some(extra) = positional.next() {
        return Err(Fail::Usage(format!(
            "unexpected argument {}",
            extra.to_string_lossy()
        )));
    }
    Ok(Some(Args {
        command,
        file,
        today,
        version,
        batch,
        format,
        output,
    }))
}

fn required(v: Option<String>, flag: &str, command: &str) -> Result<String, Fail> {
    match v {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Fail::Usage(format!("{command}: {flag} is required"))),
    }
}

fn load(args: &Args, today: Date) -> Result<VendorFile, Fail> {
    let vendor = VendorFile::load(&args.file).map_err(|e| Fail::Vendor(e.to_string()))?;
    vendor
        .validate_for_build(today)
        .map_err(|e| Fail::Vendor(e.to_string()))?;
    Ok(vendor)
}

fn emit(args: &Args, text: &str) -> Result<(), Fail> {
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Fail::Output(format!("cannot write {}: {e}", path.display()))),
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| Fail::Output(format!("cannot write to standard output: {e}"))),
    }
}

fn run() -> Result<(), Fail> {
    let Some(args) = parse_args()? else {
        return std::io::stdout()
            .lock()
            .write_all(USAGE.as_bytes())
            .map_err(|e| Fail::Output(e.to_string()));
    };
    let today = args
        .today
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    match args.command.as_str() {
        "check" => {
            let vendor = load(&args, today)?;
            for w in warnings(&vendor, today) {
                eprintln!("{}: warning: {w}", args.file.display());
            }
            emit(&args, &format!("{}: OK\n", args.file.display()))
        }
        "os-release" => {
            let version = required(args.version.clone(), "--version V", "os-release")?;
            let vendor = load(&args, today)?;
            let text = os_release::fragment(&vendor, &version)
                .map_err(|e| Fail::Usage(format!("os-release: {e}")))?;
            emit(&args, &text)
        }
        "security-txt" => {
            let vendor = load(&args, today)?;
            emit(&args, &vendor.security_txt(today))
        }
        "statement" => {
            let build = BuildInfo {
                firmware_version: required(args.version.clone(), "--version V", "statement")?,
                batch: required(args.batch.clone(), "--batch B", "statement")?,
            };
            let format = required(args.format.clone(), "--format md|html|pdf", "statement")?;
            let vendor = load(&args, today)?;
            match format.as_str() {
                "md" | "markdown" => {
                    emit(&args, &statement::render(&vendor, &build, Format::Markdown))
                }
                "html" => emit(&args, &statement::render(&vendor, &build, Format::Html)),
                "pdf" => pdf(&args, &statement::render(&vendor, &build, Format::Html)),
                other => Err(Fail::Usage(format!(
                    "statement: unknown format \"{other}\"; use md, html or pdf"
                ))),
            }
        }
        other => Err(Fail::Usage(format!("unknown subcommand \"{other}\""))),
    }
}

/// Facts a builder should hear about that do not make the file invalid.
fn warnings(vendor: &VendorFile, today: Date) -> Vec<String> {
    let mut w = Vec::new();
    if vendor.vendor.url.contains("example.com") {
        w.push(
            "this is the fictional reference vendor (example.com); a product must replace every value"
                .to_owned(),
        );
    }
    let status = vendor.support_status(today);
    if status.state != disclosure::SupportState::Inside {
        w.push(status.sentence(&vendor.vendor.name));
    }
    w
}

/// HTML to PDF through WeasyPrint (Debian package `weasyprint`), reading the
/// HTML from standard input.
fn pdf(args: &Args, html: &str) -> Result<(), Fail> {
    let Some(out) = &args.output else {
        return Err(Fail::Usage(
            "statement --format pdf: --output PATH is required".to_owned(),
        ));
    };
    let mut child = std::process::Command::new("weasyprint")
        .arg("-")
        .arg(out)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            Fail::Output(format!(
                "cannot run weasyprint ({e}); install it with `apt-get install weasyprint` or use --format html"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(html.as_bytes())
            .map_err(|e| Fail::Output(format!("cannot send the HTML to weasyprint: {e}")))?;
    }
    let status = child
        .wait()
        .map_err(|e| Fail::Output(format!("weasyprint did not finish: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Fail::Output(format!(
            "weasyprint failed ({status}); its messages are above"
        )))
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Vendor(m)) => {
            eprintln!("hearth-vendor: {m}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(m)) => {
            eprintln!("hearth-vendor: {m}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Fail::Output(m)) => {
            eprintln!("hearth-vendor: {m}");
            ExitCode::from(3)
        }
    }
}
