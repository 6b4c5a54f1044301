//! EN 303 645 5.1-5 from the other side: the rate limit must slow an
//! attacker on the owner's network down without locking the owner out.
//!
//! Eight attacker addresses on loopback guess the login (and the setup
//! code, which a claimed device must not count) for the whole test. Through
//! it all:
//! - the owner's browser, trusted since it claimed the device (its
//!   `__Host-hearth_trusted` cookie), logs in within 2 s every time;
//! - a browser the owner never used here gets a bounded wait, stated in the
//!   answer, and then gets in;
//! - setup attempts on a claimed device are answered without counting;
//! - killing hearthd (as an OOM kill would) does not reset the attackers'
//!   backoff: the throttle state is on disk.
//!
//! Host mode, real hearthd, real TLS; the clients are threads with their
//! own source addresses (127.0.0.0/8 is all loopback on Linux).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::{Daemon, Response};

const PASSWORD: &str = "Lantern-Orchard-Violet-1947";
const TRUSTED_COOKIE: &str = "__Host-hearth_trusted";
/// The owner's browser that claimed the device.
const OWNER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// A browser of the owner's that has never logged in here.
const FRESH: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
/// A client that only tries setup codes.
const SETUP_PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
const ATTACKERS: usize = 8;
/// The owner's trusted browser must get in this fast, every time.
const OWNER_LATENCY: Duration = Duration::from_secs(2);
/// The longest a fresh browser may be asked to wait in one answer.
const FRESH_WAIT_BOUND: u64 = 60;

fn attacker(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + n as u8))
}

fn send(from: IpAddr, addr: SocketAddr, path: &str, cookie: Option<&str>, body: &str) -> Response {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    system_tests::https::request_from(from, addr, "POST", path, &headers, Some(body))
        .unwrap_or_else(|e| panic!("POST {path} from {from}: {e}"))
}

fn login_body(password: &str) -> String {
    serde_json::json!({ "password": password }).to_string()
}

fn retry_after(response: &Response) -> u64 {
    response
        .retry_after()
        .unwrap_or_else(|| panic!("a 429 carries Retry-After: {}", response.headers))
}

/// Guessing from `ATTACKERS` addresses until `stop`: wrong passwords and
/// wrong setup codes, each address as fast as the answers allow.
struct Attack {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    checked: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Attack {
    fn start(addr: Arc<std::sync::RwLock<SocketAddr>>) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let checked = Arc::new(AtomicUsize::new(0));
        let threads = (0..ATTACKERS)
            .map(|n| {
                let (stop, sent, checked, addr) =
                    (stop.clone(), sent.clone(), checked.clone(), addr.clone());
                thread::spawn(move || {
                    let mut guess = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        guess += 1;
                        let target = *addr.read().expect("lock");
                        let (path, body) = if guess.is_multiple_of(4) {
                            let code = serde_json::json!({
                                "setup_code": format!("WRONG-{guess:04}"),
                                "password": PASSWORD, "password_confirm": PASSWORD,
                            });
                            ("/api/setup", code.to_string())
                        } else {
                            ("/api/login", login_body(&format!("guess-{n}-{guess}")))
                        };
                        // The daemon may be restarting: a refused connection is
                        // the attacker's problem, not the test's.
                        let Ok(response) = system_tests::https::request_from(
                            attacker(n),
                            target,
                            "POST",
                            path,
                            &[],
                            Some(&body),
                        ) else {
                            thread::sleep(Duration::from_millis(200));
                            continue;
                        };
                        sent.fetch_add(1, Ordering::Relaxed);
                        if response.status == 401 {
                            checked.fetch_add(1, Ordering::Relaxed);
                        }
                        thread::sleep(Duration::from_millis(100));
                    }
                })
            })
            .collect();
        Attack {
            stop,
            sent,
            checked,
            threads,
        }
    }

    fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("attacker thread");
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.checked.load(Ordering::Relaxed),
        )
    }
}

/// Logs in from `from` without a trusted cookie, waiting as each 429 says;
/// every wait must be stated in the answer and at most `FRESH_WAIT_BOUND`.
/// Returns the waits.
fn login_waiting_as_told(from: IpAddr, addr: &std::sync::RwLock<SocketAddr>) -> Vec<u64> {
    let started = Instant::now();
    let mut waits = Vec::new();
    loop {
        let response = send(
            from,
            *addr.read().expect("lock"),
            "/api/login",
            None,
            &login_body(PASSWORD),
        );
        if response.status == 200 {
            return waits;
        }
        assert_eq!(response.status, 429, "{}", response.body);
        let wait = retry_after(&response);
        assert!(
            response.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("Try again in {wait} seconds"))),
            "the answer states the wait: {}",
            response.body
        );
        assert!(
            wait <= FRESH_WAIT_BOUND,
            "{from} was asked to wait {wait} s (waits so far {waits:?})"
        );
        waits.push(wait);
        assert!(
            started.elapsed() < Duration::from_secs(3 * FRESH_WAIT_BOUND),
            "{from} was still refused after {:?} (waits {waits:?})",
            started.elapsed()
        );
        thread::sleep(Duration::from_secs(wait));
    }
}

#[test]
fn guessing_from_the_network_slows_the_attacker_and_never_locks_the_owner_out() {
    let mut daemon = Daemon::start();
    let ready = daemon.ready();
    let code = ready.setup_code.expect("first boot shows a setup code");
    let addr = Arc::new(std::sync::RwLock::new(ready.addr));
    let claim = serde_json::json!({
        "setup_code": code, "password": PASSWORD, "password_confirm": PASSWORD,
    });
    let claimed = send(OWNER, ready.addr, "/api/setup", None, &claim.to_string());
    assert_eq!(claimed.status, 201, "{}", claimed.body);
    let trusted = claimed.cookie(TRUSTED_COOKIE);
    // The setup code is for the console (standard output) only; the log
    // (standard error, the journal on a device) never holds it.
    let log = daemon.stderr();
    assert!(
        !log.contains(&code) && !log.contains(&code.replace('-', "")),
        "the setup code reached the log"
    );

    let attack = Attack::start(addr.clone());
    thread::sleep(Duration::from_secs(8));

    // The owner's own browser, every 2 s while the attack goes on.
    let mut latencies = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let response = send(
            OWNER,
            *addr.read().expect("lock"),
            "/api/login",
            trusted.as_deref(),
            &login_body(PASSWORD),
        );
        let took = started.elapsed();
        assert_eq!(
            response.status,
            200,
            "the owner's trusted browser was refused during the attack (cookie {}): {}",
            trusted.is_some(),
            response.body
        );
        latencies.push(took);
        thread::sleep(Duration::from_secs(2));
    }

    // A browser the owner never used here: told how long, then let in.
    let started = Instant::now();
    let fresh_waits = login_waiting_as_told(FRESH, &addr);
    let fresh_took = started.elapsed();

    // Setup attempts on a claimed device are answered, never counted.
    let wrong_setup = serde_json::json!({
        "setup_code": "AAAA-BBBB-CCCC", "password": PASSWORD, "password_confirm": PASSWORD,
    })
    .to_string();
    for _ in 0..12 {
        let response = send(
            SETUP_PROBE,
            *addr.read().expect("lock"),
            "/api/setup",
            None,
            &wrong_setup,
        );
        assert_eq!(response.status, 409, "{}", response.body);
    }
    // Twelve counted failures would lock this address for 5 minutes; the
    // global queue alone asks for seconds.
    let setup_probe_waits = login_waiting_as_told(SETUP_PROBE, &addr);

    // A crash is no free reset: an attacker's backoff survives SIGKILL.
    daemon.restart();
    let restarted = daemon.ready();
    *addr.write().expect("lock") = restarted.addr;
    let probe = send(
        attacker(0),
        restarted.addr,
        "/api/login",
        None,
        &login_body("one-more-guess"),
    );
    let (sent, checked) = attack.stop();
    assert_eq!(
        probe.status, 429,
        "right after a restart the attacker's address was let guess again: {}",
        probe.body
    );
    let owner_after = send(
        OWNER,
        restarted.addr,
        "/api/login",
        trusted.as_deref(),
        &login_body(PASSWORD),
    );
    assert_eq!(owner_after.status, 200, "{}", owner_after.body);

    let slowest = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "attack: {sent} requests from {ATTACKERS} addresses, {checked} passwords checked; \
         owner's trusted browser: {} logins, slowest {slowest:?}; fresh browser: waits {fresh_waits:?} s, \
         in after {fresh_took:?}; after 12 setup attempts: waits {setup_probe_waits:?} s",
        latencies.len()
    );
    assert!(sent > 100, "the attack barely ran: {sent} requests");
    assert!(
        checked < sent / 4,
        "most guesses must be refused before the password is checked ({checked} of {sent})"
    );
    assert!(
        slowest <= OWNER_LATENCY,
        "the owner's trusted login took {slowest:?} under attack (latencies {latencies:?})"
    );
}
