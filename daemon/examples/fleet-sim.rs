//! Benchmark (prints figures, asserts nothing): a fleet of simulated
//! devices against one mosquitto with the shipped TLS configuration, using
//! hearthd's own MQTT TLS set-up (`fleet::tls`), reconnect policy
//! (`fleet::backoff`) and rollout-wave placement (`update::policy`).
//!
//! 1. Ramps up to `--devices` connections (default 1000).
//! 2. Restarts the broker and records when each device is back, twice: with
//!    hearthd's full-jitter backoff, and with jitter off (every device
//!    waits exactly the backoff window), the synchronised "thundering
//!    herd" jitter exists to prevent.
//! 3. Places the same device ids in a 24-hour rollout and prints the share
//!    of the fleet allowed to start after each hour.
//!
//! ```sh
//! cargo run --release -p hearthd --example fleet-sim [-- --devices 1000]
//! ```
//!
//! A simulated device is a rumqttc client with hearthd's TLS configuration
//! (one shared test certificate, its own client id); it does not run the
//! rest of hearthd. Needs `mosquitto` and `openssl`.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearthd::fleet::backoff::Backoff;
use hearthd::update::policy::wave_seed;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
use system_tests::broker::Broker;
use update_manifest::{Rollout, Timestamp};

const INITIAL: Duration = Duration::from_secs(4);
const MAX: Duration = Duration::from_secs(60);

fn main() {
    let mut devices = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--devices" {
            devices = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--devices N");
        }
    }
    // Two descriptors per connection on each side, and mosquitto inherits this.
    let want = (devices as u64) * 4 + 256;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, want)
        .expect("raise the open-file limit (run as root, or lower --devices)");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "fleet simulation: {devices} devices, one mosquitto (TLS 1.2+, client certificates), backoff window {INITIAL:?} doubling to {MAX:?}"
    );
    for jitter in [true, false] {
        let mut broker = Broker::start(&["sim"], &[]);
        let tls = hearthd::fleet::tls::client_config(
            &broker.pki("ca.crt"),
            &broker.pki("sim.crt"),
            &broker.pki("sim.key"),
        )
        .unwrap();
        let connects: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let started = Instant::now();
        runtime.block_on(async {
            for i in 0..devices {
                let mut options = MqttOptions::new(format!("sim-{i}"), "127.0.0.1", broker.port);
                options
                    .set_keep_alive(Duration::from_secs(60))
                    .set_clean_session(true)
                    .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                        tls.clone(),
                    )));
                tokio::spawn(device(options, jitter, connects.clone()));
                if i % 50 == 49 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            wait_for(&connects, devices, Duration::from_secs(300)).await;
        });
        println!(
            "\njitter {}: {} devices connected in {:.1} s (ramp of 500 per second)",
            if jitter { "on" } else { "off" },
            connects.lock().unwrap().len(),
            started.elapsed().as_secs_f64()
        );

        connects.lock().unwrap().clear();
        broker.kill();
        // Long enough for every device to notice and start backing off.
        std::thread::sleep(Duration::from_secs(3));
        broker.restart();
        let restarted = Instant::now();
        runtime.block_on(wait_for(&connects, devices, Duration::from_secs(300)));
        let times: Vec<f64> = connects
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.saturating_duration_since(restarted).as_secs_f64())
            .collect();
        report(&times, devices);
    }

    println!(
        "\nrollout waves: share of these {devices} device ids allowed to start a release spread over 24 h"
    );
    let start = Timestamp::from_unix(1_800_000_000).unwrap();
    let rollout = Rollout {
        start,
        spread_hours: 24,
    };
    let seeds: Vec<u16> = (0..devices)
        .map(|i| wave_seed(&format!("sim-{i}")))
        .collect();
    println!("  after hour | devices | share");
    for hour in [1, 2, 3, 6, 12, 18, 24] {
        let at = start.plus_seconds(hour * 3600);
        let allowed = seeds
            .iter()
            .filter(|&&s| rollout.start_for(s) <= at)
            .count();
        println!(
            "  {hour:>10} | {allowed:>7} | {:>5.1} %",
            100.0 * allowed as f64 / devices as f64
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// One simulated device: connect, and after a lost connection wait as
/// hearthd does (full jitter), or exactly the window (jitter off).
async fn device(options: MqttOptions, jitter: bool, connects: Arc<Mutex<Vec<Instant>>>) {
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    let mut backoff = Backoff::new(INITIAL, MAX);
    let rng = ring::rand::SystemRandom::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connects.lock().unwrap().push(Instant::now());
                backoff.reset();
            }
            Ok(_) => {}
            Err(_) => {
                let delay = if jitter {
                    let mut bytes = [0u8; 8];
                    ring::rand::SecureRandom::fill(&rng, &mut bytes).unwrap();
                    backoff.next_delay(u64::from_le_bytes(bytes))
                } else {
                    let window = backoff.window();
                    backoff.next_delay(0);
                    window
                };
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn wait_for(connects: &Mutex<Vec<Instant>>, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while connects.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connections per second after the restart, and when 50/90/100 % were back.
fn report(times: &[f64], devices: usize) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |share: f64| {
        let i = ((devices as f64 * share).ceil() as usize).clamp(1, devices);
        sorted.get(i - 1).copied().unwrap_or(f64::NAN)
    };
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for t in &sorted {
        *per_second.entry(*t as u64).or_default() += 1;
    }
    let peak = per_second.values().max().copied().unwrap_or(0);
    println!(
        "  after the broker restart: {} of {devices} back; 50 % after {:.1} s, 90 % after {:.1} s, all after {:.1} s; peak {peak} connections/s",
        sorted.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    let line: Vec<String> = per_second
        .iter()
        .map(|(s, n)| format!("{s}s:{n}"))
        .collect();
    println!("  connections per second: {}", line.join(" "));
}
