//! The web UI end to end in a real browser: Debian's headless Chromium,
//! driven over the W3C WebDriver protocol by Debian's chromedriver
//! (`apt-get install chromium chromium-driver`), against hearthd in host
//! mode on loopback.
//!
//! The WebDriver client is the few calls below, spoken as JSON over HTTP/1.1
//! to chromedriver on loopback: blocking like the rest of these tests, and no
//! new crates (fantoccini or thirtyfour would bring an async HTTP client
//! stack for a dozen requests).
//!
//! Screenshots of every page go to `tests/artifacts/screenshots/`
//! (gitignored; CI keeps them as artifacts).

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use support::Daemon;

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a kettle of hawks over Tuesday";
const SCREENSHOTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/artifacts/screenshots"
);
/// How long a page gets to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

const ENTER: &str = "\u{E007}";
const TAB: &str = "\u{E004}";
const CONTROL: char = '\u{E009}';

#[test]
fn an_owner_sets_up_switches_the_plug_changes_the_password_and_logs_back_in() {
    let daemon = Daemon::start();
    let ready = daemon.ready();
    let code = ready
        .setup_code
        .clone()
        .expect("first boot shows a setup code");
    let base = format!("https://{}", ready.addr);
    let browser = Browser::start();
    let _ = std::fs::remove_file(Path::new(SCREENSHOTS).join("failure.png"));

    // The public security page, before anyone has logged in.
    browser.go(&format!("{base}/security"));
    browser.wait_text("h1", "Security and support");
    let page = browser.text("main");
    for fact in [
        "31 December 2031",
        "Receiving security updates",
        "security@example.com",
        "https://example.com/security/report",
        "within 5 working days",
        "HRH-1",
    ] {
        assert!(
            page.contains(fact),
            "the security page lacks {fact:?}:\n{page}"
        );
    }
    browser.check_accessible("security");
    browser.screenshot("01-security");
    browser.check_phone("01-security");

    // Unclaimed: the login page sends the owner to setup.
    browser.go(&format!("{base}/login"));
    browser.wait_path("/setup");
    browser.wait_text("h1", "Set up your device");
    browser.wait_text("#password-hint", "At least 15 characters");
    browser.check_accessible("setup");
    browser.screenshot("02-setup");
    browser.check_phone("02-setup");

    // A too-short password is refused with a sentence on the page.
    browser.type_into("#setup-code", &code);
    browser.type_into("#new-password", "short");
    browser.type_into("#confirm-password", "short");
    browser.click("#setup-form button[type=submit]");
    browser.wait_text("#form-error", "15 characters");
    browser.screenshot("03-setup-refused");

    // The show-password toggle reveals what was typed, and hides it again.
    browser.clear("#new-password");
    browser.clear("#confirm-password");
    browser.type_into("#new-password", PASSWORD);
    let toggle = "button.toggle[data-toggle=new-password]";
    assert_eq!(browser.property("#new-password", "type"), "password");
    browser.click(toggle);
    assert_eq!(browser.property("#new-password", "type"), "text");
    assert_eq!(browser.text(toggle), "Hide");
    assert_eq!(browser.attribute(toggle, "aria-pressed"), "true");
    browser.screenshot("04-setup-password-shown");
    // Paste works (as from a password manager): copy the shown password,
    // paste it into the confirmation.
    browser.click("#new-password");
    browser.chord(CONTROL, 'a');
    browser.chord(CONTROL, 'c');
    browser.click("#confirm-password");
    browser.chord(CONTROL, 'v');
    assert_eq!(browser.property("#confirm-password", "value"), PASSWORD);
    browser.click(toggle);
    assert_eq!(browser.property("#new-password", "type"), "password");
    assert_eq!(browser.attribute(toggle, "aria-pressed"), "false");
    assert_eq!(browser.property("#new-password", "value"), PASSWORD);
    browser.click("#setup-form button[type=submit]");

    // The claim logs the owner in and shows the dashboard.
    browser.wait_path("/");
    browser.wait_text("#plug-state", "off");
    browser.wait_text("h1", "Hearth Reference Hub");
    assert_eq!(browser.text("#model"), "HRH-1");
    assert_eq!(browser.text("#hardware-revision"), "A");
    assert_eq!(browser.text("#firmware-version"), env!("CARGO_PKG_VERSION"));
    assert!(browser.text("#support-end").starts_with("2031-12-31"));
    assert_eq!(browser.text("#disclosure-contact"), "security@example.com");
    assert_eq!(
        browser.attribute("#disclosure-contact a", "href"),
        "mailto:security@example.com"
    );
    // In host mode there is no A/B slot to update, and the card says so.
    let update = browser.text("#update-status");
    assert!(
        update.starts_with("Updates cannot run") && update.contains("slot"),
        "{update}"
    );
    browser.check_accessible("dashboard");
    browser.screenshot("05-dashboard");
    browser.check_phone("05-dashboard");

    // The plug: by mouse, then by keyboard alone (Tab to the button, Enter).
    assert_eq!(browser.text("#plug-toggle"), "Switch on");
    browser.click("#plug-toggle");
    browser.wait_text("#plug-state", "on");
    assert_eq!(browser.text("#plug-toggle"), "Switch off");
    assert_eq!(browser.attribute("#plug-toggle", "aria-pressed"), "true");
    browser.screenshot("06-dashboard-plug-on");
    browser.tab_to("plug-toggle");
    browser.keys(ENTER);
    browser.wait_text("#plug-state", "off");
    browser.click("#plug-toggle");
    browser.wait_text("#plug-state", "on");

    // Settings: a wrong current password is refused on the page, the right
    // one changes it.
    browser.click("nav a[href='/settings']");
    browser.wait_path("/settings");
    browser.wait_text("h1", "Settings");
    // Automatic updates are on by default; the page shows it once loaded.
    browser.wait("the automatic-updates setting", || {
        browser.property("#save-updates", "disabled") == json!(false)
    });
    assert_eq!(
        browser.property("#automatic-updates", "checked"),
        json!(true)
    );
    browser.check_accessible("settings");
    browser.screenshot("08-settings");
    browser.check_phone("08-settings");
    browser.type_into("#current-password", "not my password at all");
    browser.type_into("#new-password", NEW_PASSWORD);
    browser.type_into("#confirm-password", NEW_PASSWORD);
    browser.click("#password-form button[type=submit]");
    browser.wait_text("#password-result", "current password");
    assert_eq!(
        browser.path(),
        "/settings",
        "a wrong current password is not a logout"
    );
    browser.screenshot("09-settings-wrong-current");
    browser.clear("#current-password");
    browser.type_into("#current-password", PASSWORD);
    browser.click("#password-form button[type=submit]");
    browser.wait_text("#password-result", "Password changed");
    assert_eq!(
        browser.property("#new-password", "value"),
        "",
        "the form is cleared"
    );
    browser.screenshot("10-settings-changed");

    // Log out, then the old password is refused with a visible message.
    browser.click("#logout");
    browser.wait_path("/login");
    browser.wait_text("h1", "Log in");
    browser.check_accessible("login");
    browser.screenshot("11-login");
    browser.check_phone("11-login");
    browser.type_into("#password", PASSWORD);
    browser.type_into("#password", ENTER);
    browser.wait_text("#form-error", "");
    let refusal = browser.text("#form-error");
    assert!(
        refusal.to_lowercase().contains("password"),
        "the refusal says what was wrong: {refusal:?}"
    );
    assert_eq!(browser.path(), "/login");
    browser.screenshot("12-login-old-password-refused");

    // The new password works, submitted from the keyboard.
    browser.clear("#password");
    browser.type_into("#password", NEW_PASSWORD);
    browser.type_into("#password", ENTER);
    browser.wait_path("/");
    browser.wait_text("#plug-state", "on");
    browser.screenshot("13-dashboard-after-login");
}

/// The dashboard during an update (EN 303 645 5.3-11, 5.3-12): hearthd in
/// host mode with a real `swupdate` (swupdate-testkit: file-backed slots, a
/// private GRUB environment), a release made with hearth-release, served
/// slowly over HTTPS on loopback, found by the periodic manifest check.
#[test]
fn the_dashboard_shows_the_download_progress_and_warns_before_the_restart() {
    use hearth_release::testing::{Tool, Vendor, image};
    use system_tests::update_server::UpdateServer;

    let vendor = Vendor::new(Tool::Library, env!("CARGO_TARGET_TMPDIR"));
    let swupdate = vendor.swupdate();
    let swu = vendor.build(&swupdate, "next", "1.1.0", &["signer"], &image(7));
    let pki = tempfile::tempdir().expect("temp dir");
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../broker/dev-pki.sh"))
        .arg(pki.path())
        .status()
        .expect("run broker/dev-pki.sh");
    assert!(status.success());
    let www = tempfile::tempdir().expect("web root");
    let server = UpdateServer::start(
        www.path(),
        &pki.path().join("broker.crt"),
        &pki.path().join("broker.key"),
    );
    // About 4 s per 64 KiB: the 256 KiB release takes some 16 s.
    server.pace(16 * 1024);
    let base_url = format!("https://127.0.0.1:{}/hearth", server.port);
    let manifest = vendor.manifest(&swu, "signer", &["--base-url", &base_url]);
    vendor.run(&[
        "publish",
        "--manifest",
        manifest.to_str().expect("path"),
        "--artifact",
        swu.to_str().expect("path"),
        "--out",
        www.path().to_str().expect("path"),
    ]);

    // The device's own facts, as the image would have them.
    let device = tempfile::tempdir().expect("device files");
    let file = |name: &str, text: &str| {
        let path = device.path().join(name);
        std::fs::write(&path, text).expect("device file");
        path.display().to_string()
    };
    let reboot_request = device.path().join("reboot-request");
    let control = &swupdate.client.config().control_socket;
    let progress = &swupdate.client.config().progress_socket;
    let config = format!(
        "[update]\nroot_file = \"{}\"\nca_file = \"{}\"\nhwrevision_file = \"{}\"\n\
         os_release_file = \"{}\"\ncmdline_file = \"{}\"\n\
         swupdate_control_socket = \"{}\"\nswupdate_progress_socket = \"{}\"\n\
         manifest_url = \"{base_url}/HRH-1/latest.json\"\nreboot_request_file = \"{}\"\n\
         reboot_notice_secs = 8\nclock_has_rtc = true\n",
        vendor.root_cert().display(),
        pki.path().join("ca.crt").display(),
        file("hwrevision", "HRH-1 A\n"),
        file("os-release", "NAME=Hearth\nIMAGE_VERSION=1.0.0\n"),
        file("cmdline", "root=PARTLABEL=hearth-a ro hearth.slot=A\n"),
        control.display(),
        progress.display(),
        reboot_request.display(),
    );
    let daemon = Daemon::with_override(&config);
    let ready = daemon.ready();
    let code = ready.setup_code.clone().expect("a setup code");
    let base = format!("https://{}", ready.addr);
    let browser = Browser::start();

    browser.go(&format!("{base}/setup"));
    browser.wait_text("h1", "Set up your device");
    browser.type_into("#setup-code", &code);
    browser.type_into("#new-password", PASSWORD);
    browser.type_into("#confirm-password", PASSWORD);
    browser.click("#setup-form button[type=submit]");
    browser.wait_path("/");
    assert_eq!(browser.text("#firmware-version"), "1.0.0");

    // The periodic check (5-35 s after start) finds 1.1.0; the card shows
    // the release and a progress bar while it is downloaded, checked chunk
    // by chunk, into slot B.
    let patience = Duration::from_secs(90);
    let deadline = Instant::now() + patience;
    loop {
        let percent = browser.property("#update-progress", "value");
        let shown = browser.property("#update-progress-row", "hidden") == json!(false);
        if shown && percent.as_f64().is_some_and(|p| p > 0.0 && p < 100.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress bar within {patience:?}: {}",
            browser.text("#update-status")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = browser.text("#update-status");
    assert!(
        status.contains("Downloading and installing the update 1.1.0"),
        "{status}"
    );
    assert!(browser.text("#update-release").contains("Update 1.1.0"));
    assert_eq!(
        browser.attribute("#update-notes", "href"),
        "https://example.com/notes"
    );
    browser.check_accessible("dashboard-updating");
    browser.screenshot("14-dashboard-update-progress");

    // Installed: before the restart the owner is told when.
    let deadline = Instant::now() + patience;
    while browser.property("#update-reboot", "hidden") != json!(false) {
        assert!(
            Instant::now() < deadline,
            "no restart notice: {}",
            browser.text("#update-status")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let notice = browser.text("#update-reboot");
    assert!(notice.contains("restart"), "{notice}");
    assert!(!reboot_request.exists(), "the restart waits for the notice");
    // The owner saves the settings during the notice (anything that wakes
    // the update agent: a periodic check does the same). It once restarted
    // the device at once, before the time the owner had been given.
    let saved = browser.script(SAVE_SETTINGS_UNCHANGED);
    let until = saved["until"].as_str().unwrap_or_default().to_owned();
    assert_eq!(saved["status"], 200, "saving the settings: {saved}");
    let until = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("the notice's time {until:?}: {e}"));
    browser.screenshot("15-dashboard-restart-notice");
    browser.check_phone("15-dashboard-restart-notice");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reboot_request.exists() {
        assert!(
            Instant::now() < deadline,
            "no reboot was requested after the notice"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let requested: time::OffsetDateTime = std::fs::metadata(&reboot_request)
        .and_then(|m| m.modified())
        .expect("the reboot request's time")
        .into();
    assert!(
        requested.unix_timestamp() >= until.unix_timestamp(),
        "the restart was requested at {requested}, before the {until} the owner was told"
    );
    // SWUpdate wrote slot B and armed it for one trial boot.
    assert_eq!(swupdate.slot(&swupdate.slot_b), image(7));
    assert_eq!(swupdate.grubenv_var("hearth_slot").as_deref(), Some("B"));
    assert_eq!(swupdate.grubenv_var("ustate").as_deref(), Some("1"));
}

/// Run in the dashboard: reads the settings and saves them unchanged as the
/// page would, then reads the restart time the update card shows.
const SAVE_SETTINGS_UNCHANGED: &str = "
    const call = (method, path, body) => {
        const x = new XMLHttpRequest();
        x.open(method, path, false);
        x.setRequestHeader('Content-Type', 'application/json');
        if (method !== 'GET') x.setRequestHeader('X-CSRF-Token', csrfToken);
        x.send(body);
        return x;
    };
    const settings = call('GET', '/api/settings').responseText;
    const saved = call('PUT', '/api/settings', settings);
    const update = JSON.parse(call('GET', '/api/update').responseText);
    return { status: saved.status, until: update.until };
";

/// A Chromium session through chromedriver (driven with fantoccini, a
/// WebDriver client); both end on drop. The test is synchronous, so each
/// command runs on a small runtime of its own.
struct Browser {
    driver: Child,
    runtime: tokio::runtime::Runtime,
    client: fantoccini::Client,
    /// Chromium's profile; removed on drop, after Chromium has quit.
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        // Port 0: chromedriver picks a free port and prints it. It accepts
        // local connections only (no --allowed-ips), checked below.
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so Chromium can be ended with it.
            .process_group(0)
            .spawn()
            .expect("start chromedriver (apt-get install chromium-driver)");
        let stdout = driver.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the port, then keeps draining chromedriver's console.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromedriver did not say which port it listens on");
        assert_loopback_only(port);
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // The device's certificate is self-signed, made on first boot.
            // Accepting it here is fine: the other host-mode tests check its
            // fingerprint against the one the console prints; this test is
            // about the pages.
            "--ignore-certificate-errors",
            // Anything not on loopback goes to a closed local port, so the
            // browser cannot reach the network even if a flag above misses
            // a feature (loopback itself bypasses proxies).
            "--proxy-server=127.0.0.1:9",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("acceptInsecureCerts".into(), json!(true));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        // Plain HTTP: chromedriver is on loopback, so no TLS stack here.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = runtime
            .block_on(
                fantoccini::ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session through chromedriver");
        Browser {
            driver,
            runtime,
            client,
            _profile: profile,
        }
    }

    /// Runs one WebDriver command; panics with what failed.
    fn run<T>(
        &self,
        what: &str,
        command: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.runtime
            .block_on(command)
            .unwrap_or_else(|e| panic!("WebDriver {what} failed: {e}"))
    }

    fn go(&self, url: &str) {
        self.run(&format!("go to {url}"), self.client.goto(url));
    }

    fn path(&self) -> String {
        self.script("return window.location.pathname;")
            .as_str()
            .expect("path")
            .to_owned()
    }

    fn wait_path(&self, want: &str) {
        self.wait(&format!("the page {want}"), || self.path() == want);
    }

    fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.find(css)
            .unwrap_or_else(|| panic!("no {css} on the page {}", self.path()))
    }

    /// The element matching `css`, if the page has one.
    fn find(&self, css: &str) -> Option<fantoccini::elements::Element> {
        match self
            .runtime
            .block_on(self.client.find(fantoccini::Locator::Css(css)))
        {
            Ok(element) => Some(element),
            Err(e) if e.is_no_such_element() => None,
            Err(e) => panic!("WebDriver find {css} failed: {e}"),
        }
    }

    /// The text as rendered: hidden elements have none.
    fn text(&self, css: &str) -> String {
        self.run(&format!("text of {css}"), self.element(css).text())
    }

    /// Waits until `css` shows text containing `want` (any text if empty).
    fn wait_text(&self, css: &str, want: &str) {
        self.wait(&format!("{css} to show {want:?}"), || {
            // The element may not be there yet (or any more): keep waiting.
            self.find(css).is_some_and(|_| {
                let text = self.text(css);
                !text.is_empty() && text.contains(want)
            })
        });
    }

    /// A DOM property with its JSON type (a boolean stays a boolean).
    fn property(&self, css: &str, name: &str) -> Value {
        let element = self.element(css);
        let element = serde_json::to_value(&element).expect("an element as JSON");
        self.run(
            &format!("property {name} of {css}"),
            self.client.execute(
                "return arguments[0][arguments[1]];",
                vec![element, json!(name)],
            ),
        )
    }

    fn attribute(&self, css: &str, name: &str) -> String {
        self.run(
            &format!("attribute {name} of {css}"),
            self.element(css).attr(name),
        )
        .unwrap_or_default()
    }

    /// Types as a user would (key events), so paste-blocking or input
    /// handlers would be exercised too.
    fn type_into(&self, css: &str, text: &str) {
        self.run(
            &format!("type into {css}"),
            self.element(css).send_keys(text),
        );
    }

    fn clear(&self, css: &str) {
        self.run(&format!("clear {css}"), self.element(css).clear());
    }

    fn click(&self, css: &str) {
        self.run(&format!("click {css}"), self.element(css).click());
    }

    /// Presses keys, each down then up, on whatever has the focus.
    fn keys(&self, keys: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for key in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.perform(actions);
    }

    /// Presses `key` while holding `modifier`, on whatever has the focus.
    fn chord(&self, modifier: char, key: char) {
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: modifier })
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key })
            .then(KeyAction::Up { value: modifier });
        self.perform(actions);
    }

    fn perform(&self, actions: KeyActions) {
        self.run("key actions", self.client.perform_actions(actions));
        self.run("release actions", self.client.release_actions());
    }

    /// Moves the focus with Tab from the top of the page until the element
    /// with `id` has it: it must be reachable by keyboard.
    fn tab_to(&self, id: &str) {
        self.script("document.activeElement && document.activeElement.blur();");
        for _ in 0..30 {
            self.keys(TAB);
            if self.script("return document.activeElement && document.activeElement.id;")
                == json!(id)
            {
                return;
            }
        }
        panic!("#{id} cannot be reached with the Tab key");
    }

    fn script(&self, body: &str) -> Value {
        self.run("script", self.client.execute(body, Vec::new()))
    }

    fn resize(&self, width: u32, height: u32) {
        self.run("resize", self.client.set_window_size(width, height));
    }

    /// On a phone-sized screen (390 × 844 CSS pixels) nothing needs
    /// sideways scrolling.
    fn check_phone(&self, name: &str) {
        self.resize(390, 844);
        let overflow = self
            .script("const d = document.documentElement; return d.scrollWidth - d.clientWidth;");
        let widest = self.script(
            "let w = null; for (const el of document.querySelectorAll('body *')) { \
               const r = el.getBoundingClientRect(); \
               if (!w || r.right > w.right) w = { right: r.right, tag: el.tagName, id: el.id }; } \
             return w;",
        );
        self.screenshot(&format!("{name}-phone"));
        self.resize(1280, 900);
        assert_eq!(
            overflow,
            json!(0),
            "{name} scrolls sideways on a phone; widest element: {widest}"
        );
    }

    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            if Instant::now() > deadline {
                self.screenshot("failure");
                panic!(
                    "waited {PATIENCE:?} for {what}; the page {} shows:\n{}",
                    self.path(),
                    self.text("body")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the whole page: the window is made as tall as the
    /// page for the shot, since WebDriver captures only the window.
    fn screenshot(&self, name: &str) {
        let (width, height) = self.run("window size", self.client.get_window_size());
        let tall = self.script(
            "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;",
        );
        let tall = tall
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .expect("page height");
        let width = u32::try_from(width).expect("window width");
        self.resize(width, tall);
        let png = self.run("screenshot", self.client.screenshot());
        self.resize(width, u32::try_from(height).expect("window height"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
        let dir = Path::new(SCREENSHOTS);
        std::fs::create_dir_all(dir).expect("screenshot dir");
        let path: PathBuf = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
    }

    /// Basic accessibility, checked in the live page: a language, one h1,
    /// a label for every input, a name for every button, alt text, and
    /// WCAG AA contrast (4.5:1) for the text the page shows.
    fn check_accessible(&self, page: &str) {
        let problems = self.script(ACCESSIBILITY_CHECK);
        assert_eq!(
            problems,
            json!([]),
            "accessibility problems on the {page} page"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Quits Chromium; then chromedriver and anything left in its
        // process group (not yet reaped, so the group is still ours).
        let _ = self.runtime.block_on(self.client.clone().close());
        let _ = killpg(Pid::from_raw(self.driver.id() as i32), Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

const ACCESSIBILITY_CHECK: &str = r#"
const problems = [];
if (!document.documentElement.lang) problems.push('the page has no lang');
if (document.querySelectorAll('h1').length !== 1) problems.push('the page needs exactly one h1');
for (const input of document.querySelectorAll('input, select, textarea')) {
  if (input.type === 'hidden') continue;
  if (input.labels.length === 0 && !input.getAttribute('aria-label') && !input.getAttribute('aria-labelledby')) {
    problems.push('#' + input.id + ' has no label');
  }
}
for (const button of document.querySelectorAll('button')) {
  if (!button.textContent.trim() && !button.getAttribute('aria-label')) problems.push('a button has no name');
}
for (const img of document.querySelectorAll('img')) {
  if (!img.hasAttribute('alt')) problems.push('an image has no alt text');
}
const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const luminance = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (el) => {
  for (; el; el = el.parentElement) {
    const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
for (const el of document.querySelectorAll('h1, h2, h3, p, li, dt, dd, label, a, button, strong')) {
  if (!el.textContent.trim() || el.getClientRects().length === 0) continue;
  const fg = luminance(rgb(getComputedStyle(el).color));
  const bg = luminance(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  if (ratio < 4.5) problems.push('low contrast (' + ratio.toFixed(2) + ':1) on ' + el.tagName + ' "' + el.textContent.trim().slice(0, 30) + '"');
}
return problems;
"#;

/// chromedriver must accept connections on loopback only.
fn assert_loopback_only(port: u16) {
    let hex_port = format!(":{port:04X}");
    for (table, loopback) in [
        ("/proc/net/tcp", &["0100007F"][..]),
        ("/proc/net/tcp6", &["00000000000000000000000001000000"][..]),
    ] {
        let listing = std::fs::read_to_string(table).unwrap_or_default();
        for line in listing.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            // 0A: LISTEN.
            if *state == "0A" && local.ends_with(&hex_port) {
                let ip = &local[..local.len() - hex_port.len()];
                assert!(
                    loopback.contains(&ip),
                    "chromedriver listens on {ip} ({table}), not only on loopback"
                );
            }
        }
    }
}
