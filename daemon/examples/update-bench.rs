//! Benchmark (prints figures, asserts nothing): installing a ≥ 200 MiB
//! release through hearthd's `update::install` (manifest check, SHA-256 of
//! the stream, `swupdate-rs` into the real SWUpdate daemon) against
//! `swupdate -i` of the same `.swu` alone, with the same slot set-up
//! (`swupdate-testkit`: private mount namespace, file-backed slots, GRUB
//! environment file). Also the installing process's peak RSS (VmHWM).
//!
//! ```sh
//! cargo run --release -p hearthd --example update-bench [-- --mib 224 --rounds 2 --uplink-mbit 50]
//! ```
//!
//! `--uplink-mbit N` also runs the HTTPS comparison with the server paced
//! to about N Mbit/s (a home uplink), where every byte fetched counts.
//!
//! `--delta OLD NEW` instead measures a delta release (docs/updates.md,
//! "Delta updates"): NEW (a root file system image) released with
//! `build --delta`, installed by hearthd on a device whose slot A holds OLD,
//! once from the full `.swu` and once as a delta (slot A scanned, the pack's
//! segments it lacks read from the pack file); it prints the full release's
//! size, the bytes the delta fetched, and both installs' time and peak RSS.
//!
//! ```sh
//! qemu/build-image && qemu/build-image --variant audit   # two builds
//! cargo run --release -p hearthd --example update-bench -- \
//!     --delta qemu/out/rootfs.ext4 qemu/out/audit/rootfs.ext4
//! ```
//!
//! The installing side runs in a child process of its own (this program
//! re-executed with `child`), so its VmHWM is that of an installation
//! only, not of building the release. Targets (issue 5): ≤ 1.05× the time
//! of `swupdate -i` (and of `swupdate -d` over HTTPS, issue 15), ≤ 16 MiB
//! peak RSS. swupdate's time runs from its start (reading the certificate,
//! ~tens of ms) to the line that says it succeeded, not to its exit, which
//! waits for a `sleep(1)` poll; hearthd's starts at the `install` call with
//! the daemon already running and ends with SWUpdate's result. Needs `swupdate`,
//! `openssl`, `zstd`, `unshare`; the work directory is `target/tmp/` (not
//! `/tmp`, which swupdate's namespace hides), about 6 × the image size.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hearthd::update::{self, Selection, Slot, UpdateRecord};
use swupdate_rs::{Client, ClientConfig};
use update_manifest::{DeviceFacts, Timestamp, TrustedRoot};

const MODEL: &str = "HRH-1";
const REV: &str = "A";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        child(&args[1..]);
        return;
    }
    let mut mib = 224usize;
    let mut rounds = 2usize;
    let mut uplink_mbit = None;
    let mut delta_images = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mib" => mib = it.next().unwrap().parse().unwrap(),
            "--rounds" => rounds = it.next().unwrap().parse().unwrap(),
            "--uplink-mbit" => uplink_mbit = Some(it.next().unwrap().parse().unwrap()),
            "--delta" => {
                let old = PathBuf::from(it.next().unwrap());
                delta_images = Some((old, PathBuf::from(it.next().unwrap())));
            }
            other => panic!(
                "unknown option {other}; use --mib N --rounds N --uplink-mbit N, or --delta OLD NEW"
            ),
        }
    }
    match delta_images {
        Some((old, new)) => delta(&old, &new, rounds),
        None => parent(mib, rounds, uplink_mbit),
    }
}

/// A rootfs-like image: pseudo-random bytes of limited entropy with runs
/// of zeros, so zstd has something to do (roughly 2:1, like a real rootfs).
fn image(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let block = (len - out.len()).min(4096);
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(4) {
            out.resize(out.len() + block, 0);
            continue;
        }
        for _ in 0..block {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            out.push((x >> 24) as u8 & 0x3f);
        }
    }
    out
}

fn release(args: &[&str]) {
    if let Err(e) = hearth_release::run(lexopt::Parser::from_args(args.iter().copied())) {
        panic!("hearth-release {args:?}: {e}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The vendor's keys in `w`: a root, a signing key it certifies, the key ring.
fn vendor_keys(w: &Path) {
    let p = |n: &str| w.join(n);
    release(&["keygen", "--role", "root", "--out", s(&p("root"))]);
    release(&["keygen", "--role", "signing", "--out", s(&p("signer"))]);
    release(&[
        "certify",
        "--root",
        s(&p("root")),
        "--key",
        s(&p("signer")),
        "--keyring",
        s(&p("keyring.json")),
    ]);
}

/// `build` of `rootfs` as 1.1.0 into `w/out`, for slots `slots/a` and
/// `slots/b`, `extra` options appended.
fn build(w: &Path, rootfs: &Path, slots: &Path, out: &str, extra: &[&str]) {
    let (signer, a, b, out) = (
        w.join("signer"),
        slots.join("a"),
        slots.join("b"),
        w.join(out),
    );
    let mut args = vec![
        "build",
        "--rootfs",
        s(rootfs),
        "--version",
        "1.1.0",
        "--model",
        MODEL,
        "--hw-revision",
        REV,
        "--signer",
        s(&signer),
        "--slot-a",
        s(&a),
        "--slot-b",
        s(&b),
        "--out",
        s(&out),
    ];
    args.extend(extra);
    release(&args);
}

/// `manifest` for `w/release.swu` served under `base` into `w/out`,
/// `extra` appended.
fn sign(w: &Path, base: &str, out: &str, extra: &[&str]) {
    let p = |n: &str| w.join(n);
    let (swu, signer, keyring, root, out) = (
        p("release.swu"),
        p("signer"),
        p("keyring.json"),
        p("root"),
        p(out),
    );
    let mut args = vec![
        "manifest",
        "--artifact",
        s(&swu),
        "--key",
        s(&signer),
        "--keyring",
        s(&keyring),
        "--root",
        s(&root),
        "--base-url",
        base,
        "--security-version",
        "1",
        "--release-notes",
        "https://example.com/notes",
        "--out",
        s(&out),
    ];
    args.extend(extra);
    release(&args);
}

/// The benchmark's work directory, under `target/tmp`: not under /tmp,
/// since swupdate's mount namespace hides the host's /tmp.
fn work_dir(prefix: &str) -> tempfile::TempDir {
    let base = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tmp"));
    fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap()
}

fn parent(mib: usize, rounds: usize, uplink_mbit: Option<u64>) {
    let work = work_dir("hearth-update-bench-");
    let w = work.path();
    let p = |n: &str| w.join(n);
    let size = mib << 20;
    println!(
        "update-bench: image {mib} MiB, work directory {}",
        w.display()
    );

    // The vendor side, with the release tool as a library.
    vendor_keys(w);
    let img = image(size);
    fs::write(p("rootfs.ext4"), &img).unwrap();
    // Both set-ups get their slots under the same directory names, so one
    // .swu (whose sw-description names the slot files) serves both: the
    // slot paths are fixed by symlinks made per run.
    let slots = p("slots");
    fs::create_dir_all(&slots).unwrap();
    let t = Instant::now();
    build(w, &p("rootfs.ext4"), &slots, "release.swu", &[]);
    println!(
        "update-bench: .swu built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    sign(
        w,
        "https://updates.example.com/hearth",
        "manifest.json",
        &[],
    );
    fs::remove_file(p("rootfs.ext4")).unwrap();
    // A 64 KiB release with the same slots: what `swupdate -i` costs
    // besides the data (start-up, certificate, exit).
    let swu_len = fs::metadata(p("release.swu")).unwrap().len();
    println!(
        "update-bench: .swu {:.1} MiB (image {mib} MiB, zstd)",
        swu_len as f64 / f64::from(1 << 20)
    );
    let builder = || {
        swupdate_testkit::Daemon::builder(p("root.cert.pem"))
            .hardware(MODEL, REV)
            .slot_size(size)
            .temp_dir(w)
            .install_timeout(Duration::from_secs(1800))
    };
    let link_slots = |a: &Path, b: &Path| {
        for (name, target) in [("a", a), ("b", b)] {
            let link = slots.join(name);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).unwrap();
        }
    };

    let (mut plain, mut plain_exit, mut ours, mut raw, mut hwm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Page cache: both read the .swu warm.
        let _ = fs::read(p("release.swu")).unwrap();

        // 1. swupdate -i alone.
        let one = builder().prefix("bench-plain-").one_shot();
        link_slots(one.slot_a(), one.slot_b());
        let timing = one
            .install(&p("release.swu"))
            .unwrap_or_else(|log| panic!("swupdate -i failed:\n{log}"));
        check_slot(one.slot_b(), &img, "swupdate -i");
        plain.push(timing.installed);
        plain_exit.push(timing.exited);
        drop(one);

        // 2. hearthd: the installing process is a child of its own.
        let d = builder().prefix("bench-hearthd-").start();
        link_slots(&d.slot_a, &d.slot_b);
        let run_child = |mode: &str| -> (f64, f64) {
            let figures = install_in_child(
                mode,
                &d,
                &[p("manifest.json"), p("release.swu"), p("root.cert.pem")],
            );
            check_slot(&d.slot_b, &img, mode);
            figures
        };
        let (t, peak) = run_child("hearthd");
        ours.push(Duration::from_secs_f64(t));
        hwm.push(peak);
        // 3. The same stream through swupdate-rs alone, no hearthd checks.
        fs::write(&d.slot_b, vec![swupdate_testkit::SLOT_FILL; size]).unwrap();
        let (t, _) = run_child("raw");
        raw.push(Duration::from_secs_f64(t));
        println!(
            "update-bench: round {round}: swupdate -i {:.2} s (exit {:.2} s), hearthd {:.2} s, \
             swupdate-rs alone {:.2} s, hearthd peak RSS {:.1} MiB",
            plain[round - 1].as_secs_f64(),
            plain_exit[round - 1].as_secs_f64(),
            ours[round - 1].as_secs_f64(),
            raw[round - 1].as_secs_f64(),
            hwm[round - 1]
        );
    }
    let best = |v: &[Duration]| v.iter().min().map_or(f64::NAN, Duration::as_secs_f64);
    let (tp, te, th, tr) = (best(&plain), best(&plain_exit), best(&ours), best(&raw));
    let mib_s = |t: f64| swu_len as f64 / f64::from(1 << 20) / t;
    let peak = hwm.iter().copied().fold(0.0, f64::max);
    println!("update-bench: best of {rounds}:");
    println!(
        "  swupdate -i alone:               {tp:.2} s  ({:.1} MiB/s of .swu), until it logs success",
        mib_s(tp)
    );
    println!(
        "    until it exits:                {te:.2} s  (it polls for the result with sleep(1))"
    );
    println!(
        "  hearthd verify + stream:         {th:.2} s  ({:.1} MiB/s of .swu)",
        mib_s(th)
    );
    println!("  swupdate-rs stream, no checks:   {tr:.2} s");
    println!(
        "  ratio hearthd / swupdate -i:                 {:.3}  (target <= 1.05)",
        th / tp
    );
    println!(
        "  ratio hearthd / swupdate-rs alone:           {:.3}",
        th / tr
    );
    println!("  hearthd peak RSS (VmHWM):  {peak:.1} MiB  (target <= 16 MiB)");

    over_https(w, &img, size, swu_len, rounds, None, &builder, &link_slots);
    if let Some(mbit) = uplink_mbit {
        over_https(
            w,
            &img,
            size,
            swu_len,
            rounds,
            Some(mbit),
            &builder,
            &link_slots,
        );
    }
}

/// The same release fetched over HTTPS from a loopback server: SWUpdate's
/// own downloader (`swupdate -d "-u URL"`, libcurl) against hearthd's
/// download (rustls + hyper, streamed into SWUpdate through the same
/// verified install), with hearthd's peak RSS.
#[allow(clippy::too_many_arguments)]
fn over_https(
    w: &Path,
    img: &[u8],
    size: usize,
    swu_len: u64,
    rounds: usize,
    uplink_mbit: Option<u64>,
    builder: &dyn Fn() -> swupdate_testkit::DaemonBuilder,
    link_slots: &dyn Fn(&Path, &Path),
) {
    let p = |n: &str| w.join(n);
    let pki = p("pki");
    if !pki.join("ca.crt").exists() {
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../broker/dev-pki.sh"))
            .arg(&pki)
            .status()
            .unwrap();
        assert!(status.success(), "broker/dev-pki.sh failed");
    }
    let www = p(&format!("www-{}", uplink_mbit.unwrap_or(0)));
    fs::create_dir_all(&www).unwrap();
    let server = system_tests::update_server::UpdateServer::start(
        &www,
        &pki.join("broker.crt"),
        &pki.join("broker.key"),
    );
    if let Some(mbit) = uplink_mbit {
        server.pace(mbit * 1_000_000 / 8);
    }
    let base = format!("https://127.0.0.1:{}/hearth", server.port);
    sign(w, &base, "manifest-https.json", &[]);
    release(&[
        "publish",
        "--manifest",
        s(&p("manifest-https.json")),
        "--artifact",
        s(&p("release.swu")),
        "--out",
        s(&www),
    ]);
    let url = format!("{base}/{MODEL}/1.1.0/release.swu");
    let (mut theirs, mut theirs_exit, mut ours, mut hwm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fetched_by_hearthd = 0;
    for round in 1..=rounds {
        let one = builder().prefix("bench-dl-").one_shot();
        link_slots(one.slot_a(), one.slot_b());
        let timing = one
            .download(&url, &pki.join("ca.crt"))
            .unwrap_or_else(|log| panic!("swupdate -d failed:\n{log}"));
        check_slot(one.slot_b(), img, "swupdate -d");
        theirs.push(timing.installed.as_secs_f64());
        theirs_exit.push(timing.exited.as_secs_f64());
        drop(one);

        let before: u64 = server.log().iter().map(|r| r.sent).sum();
        let d = builder().prefix("bench-hearthd-https-").start();
        link_slots(&d.slot_a, &d.slot_b);
        fs::write(&d.slot_b, vec![swupdate_testkit::SLOT_FILL; size]).unwrap();
        let (seconds, peak) = install_in_child(
            "https",
            &d,
            &[
                p("manifest-https.json"),
                pki.join("ca.crt"),
                p("root.cert.pem"),
            ],
        );
        check_slot(&d.slot_b, img, "hearthd over https");
        fetched_by_hearthd = server.log().iter().map(|r| r.sent).sum::<u64>() - before;
        ours.push(seconds);
        hwm.push(peak);
        println!(
            "update-bench: https round {round}: swupdate -d {:.2} s (exit {:.2} s), hearthd {:.2} s, \
             hearthd peak RSS {:.1} MiB",
            theirs[round - 1],
            theirs_exit[round - 1],
            ours[round - 1],
            hwm[round - 1]
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (tt, to) = (best(&theirs), best(&ours));
    let mib_s = |t: f64| swu_len as f64 / f64::from(1 << 20) / t;
    let index_len = fs::metadata(www.join(format!("hearth/{MODEL}/1.1.0/release.swu.index")))
        .map_or(0, |m| m.len());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let pace = uplink_mbit.map_or("at full speed".to_owned(), |m| {
        format!("paced to {m} Mbit/s")
    });
    println!("update-bench: over HTTPS from a loopback server {pace}, best of {rounds}:");
    println!(
        "  swupdate's downloader (libcurl):  {tt:.2} s  ({:.1} MiB/s), until it logs success",
        mib_s(tt)
    );
    println!(
        "    until it exits:                 {:.2} s  (its downloader polls for the result with sleep(1))",
        best(&theirs_exit)
    );
    println!(
        "  hearthd download + verify:        {to:.2} s  ({:.1} MiB/s)",
        mib_s(to)
    );
    println!("  ratio hearthd / swupdate -d:      {:.3}", to / tt);
    let (mt, mo) = (median(&theirs), median(&ours));
    println!(
        "    of the medians:                 {:.3}  ({mo:.2} s against {mt:.2} s)",
        mo / mt
    );
    println!(
        "  hearthd peak RSS (VmHWM):         {:.1} MiB",
        hwm.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "  bytes hearthd fetched (last round): {fetched_by_hearthd} = artifact {swu_len} + index {index_len} + {:.3} %",
        (fetched_by_hearthd as f64 - (swu_len + index_len) as f64) * 100.0
            / (swu_len + index_len) as f64
    );
    println!(
        "  load average (1, 5, 15 min):     {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The middle value (the upper one of an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The delta benchmark: see the module documentation.
fn delta(old: &Path, new: &Path, rounds: usize) {
    let work = work_dir("hearth-delta-bench-");
    let w = work.path();
    let p = |n: &str| w.join(n);
    let (old_img, new_img) = (fs::read(old).unwrap(), fs::read(new).unwrap());
    let size = old_img.len().max(new_img.len());
    vendor_keys(w);
    let slots = p("slots");
    fs::create_dir_all(&slots).unwrap();
    let t = Instant::now();
    build(w, new, &slots, "release.swu", &["--delta"]);
    let built = t.elapsed().as_secs_f64();
    sign(
        w,
        "https://updates.example.com/hearth",
        "manifest.json",
        &["--delta"],
    );
    let len = |n: &str| fs::metadata(p(n)).unwrap().len();
    let (full, index, pack) = (
        len("release.swu"),
        len("release.swu.delta"),
        len("release.swu.pack"),
    );
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "update-bench --delta: {} -> {} ({:.0} MiB image); full .swu {:.1} MiB, delta index {:.2} MiB, \
         pack {:.1} MiB; built in {built:.1} s",
        old.display(),
        new.display(),
        mib(new_img.len() as u64),
        mib(full),
        mib(index),
        mib(pack)
    );
    let mut figures: Vec<(&str, Vec<Run>)> = vec![("full", Vec::new()), ("delta", Vec::new())];
    for _ in 0..rounds {
        for (mode, runs) in &mut figures {
            let d = swupdate_testkit::Daemon::builder(p("root.cert.pem"))
                .hardware(MODEL, REV)
                .slot_size(size)
                .temp_dir(w)
                .install_timeout(Duration::from_secs(1800))
                .prefix("bench-delta-")
                .start();
            for (name, target) in [("a", &d.slot_a), ("b", &d.slot_b)] {
                let link = slots.join(name);
                let _ = fs::remove_file(&link);
                std::os::unix::fs::symlink(target, &link).unwrap();
            }
            // Slot A runs the old release.
            let mut slot_a = old_img.clone();
            slot_a.resize(size, 0);
            fs::write(&d.slot_a, &slot_a).unwrap();
            let child_mode = if *mode == "full" { "hearthd" } else { "delta" };
            let out = child_output(
                child_mode,
                &d,
                &[p("manifest.json"), p("release.swu"), p("root.cert.pem")],
            );
            let slot_b = fs::read(&d.slot_b).unwrap();
            assert!(
                slot_b[..new_img.len()] == new_img[..],
                "{mode}: slot B does not hold the new image"
            );
            let fetched = if *mode == "full" {
                full + index_of_len(&p("release.swu"))
            } else {
                out.2
            };
            runs.push((out.0, out.1, fetched));
        }
    }
    println!("update-bench --delta: best of {rounds}:");
    for (mode, runs) in &figures {
        let time = runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let peak = runs.iter().map(|r| r.1).fold(0.0, f64::max);
        let fetched = runs.first().map_or(0, |r| r.2);
        println!(
            "  {mode:5} install: {time:6.2} s, peak RSS {peak:5.1} MiB, fetched {:8.2} MiB ({:5.1} % of the full .swu)",
            mib(fetched),
            fetched as f64 * 100.0 / full as f64
        );
    }
    zchunk_figure(old, new, w, full);
}

/// What SWUpdate's own delta handler would fetch for the same two images:
/// zchunk's `zck_delta_size` over `zck -u` files of both (the chunking and
/// matching the handler uses, with the source made from the running slot).
/// Computed by zchunk's tools, not measured through SWUpdate.
fn zchunk_figure(old: &Path, new: &Path, w: &Path, full: u64) {
    let zck = |image: &Path, out: &Path| {
        Command::new("zck")
            .args(["-u", "-h", "sha256", "-o", s(out), s(image)])
            .status()
            .is_ok_and(|st| st.success())
    };
    let (old_zck, new_zck) = (w.join("old.zck"), w.join("new.zck"));
    if !(zck(old, &old_zck) && zck(new, &new_zck)) {
        println!(
            "  SWUpdate's delta handler (zchunk): not computed (install Debian's zchunk for zck)"
        );
        return;
    }
    let out = Command::new("zck_delta_size")
        .args([s(&old_zck), s(&new_zck)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: u64 = text
        .split_whitespace()
        .skip_while(|w| *w != "download")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    println!(
        "  SWUpdate's delta handler (zchunk, by zck_delta_size, not run through SWUpdate): \
         would fetch {:.2} MiB ({:.1} % of the full .swu); {}",
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 * 100.0 / full as f64,
        text.lines().last().unwrap_or_default().trim()
    );
}

/// One install's time (s), peak RSS (MiB) and bytes fetched.
type Run = (f64, f64, u64);

/// The length of the chunk index a full install fetches beside the `.swu`.
fn index_of_len(swu: &Path) -> u64 {
    update_manifest::ChunkIndex::of(
        fs::File::open(swu).unwrap(),
        update_manifest::DEFAULT_CHUNK_LEN,
    )
    .unwrap()
    .to_bytes()
    .len() as u64
}

/// A child's time, peak RSS and pack bytes fetched (`fetched=`, delta only).
fn child_output(mode: &str, d: &swupdate_testkit::Daemon, args: &[PathBuf]) -> Run {
    let (seconds, peak, stdout) = run_child(mode, d, args);
    let fetched = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fetched="))
        .map_or(0, |v| v.trim().parse().unwrap());
    (seconds, peak, fetched)
}

fn install_in_child(mode: &str, d: &swupdate_testkit::Daemon, args: &[PathBuf]) -> (f64, f64) {
    let (seconds, peak, _) = run_child(mode, d, args);
    (seconds, peak)
}

/// Runs this program as `child MODE SOCKET_DIR ARGS...` against daemon `d`
/// and returns its install time (s), peak RSS (MiB) and output.
fn run_child(mode: &str, d: &swupdate_testkit::Daemon, args: &[PathBuf]) -> (f64, f64, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("child")
        .arg(mode)
        .arg(d.root().join("tmp"))
        .args(args)
        .env("HEARTH_BENCH_RUNNING_SLOT", &d.slot_a)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{mode} install failed: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let field = |k: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (field("seconds="), field("vmhwm_kib=") / 1024.0, stdout)
}

fn check_slot(slot: &Path, img: &[u8], who: &str) {
    if fs::read(slot).unwrap() != img {
        panic!("{who}: slot B does not hold the image");
    }
}

/// The installing process: verify the manifest and stream the artifact
/// from its file into the running SWUpdate daemon, then report.
fn child(args: &[String]) {
    let [mode, sockets, manifest, swu, root] = args else {
        panic!("child hearthd|raw|https SOCKET_DIR MANIFEST SWU|CA ROOT_CERT");
    };
    let client = Client::new(ClientConfig {
        install_timeout: Duration::from_secs(1800),
        poll_interval: Duration::from_millis(20),
        ..ClientConfig::in_dir(sockets)
    });
    let root = TrustedRoot::from_cert_pem(&fs::read_to_string(root).unwrap()).unwrap();
    let facts: DeviceFacts = UpdateRecord::factory("1.0.0".parse().unwrap()).device_facts(
        MODEL.parse().unwrap(),
        REV.parse().unwrap(),
        1 << 30,
    );
    let manifest = fs::read(manifest).unwrap();
    // What the server would send beside a file-served artifact (built
    // before the clock starts; a device downloads it).
    let index = if mode == "hearthd" {
        update_manifest::ChunkIndex::of(
            fs::File::open(swu).unwrap(),
            update_manifest::DEFAULT_CHUNK_LEN,
        )
        .unwrap()
        .to_bytes()
    } else {
        Vec::new()
    };
    let started = Instant::now();
    let selection = Selection::inactive(Slot::A);
    let install =
        |open: &mut dyn FnMut(update::Part) -> std::io::Result<Box<dyn std::io::Read + Send>>| {
            let device = update::Device {
                root: &root,
                facts: &facts,
                running_slot: None,
            };
            update::install(
                &manifest,
                open,
                &device,
                Timestamp::now(),
                &client,
                &selection,
            )
            .map(drop)
            .map_err(|e| e.to_string())
        };
    let fetched = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = match mode.as_str() {
        "delta" => {
            // The device's running slot (slot A, holding the old release)
            // and the delta release's files beside the .swu, read as a
            // server would serve them: the index whole, the pack in ranges.
            let slot = std::env::var_os("HEARTH_BENCH_RUNNING_SLOT").map(PathBuf::from);
            let slot = slot.expect("HEARTH_BENCH_RUNNING_SLOT");
            let (index, pack) = update_manifest::delta::files_beside(Path::new(swu));
            let counter = fetched.clone();
            let device = update::Device {
                root: &root,
                facts: &facts,
                running_slot: Some(&slot),
            };
            let mut open = |part| -> std::io::Result<Box<dyn std::io::Read + Send>> {
                use std::io::{Read, Seek};
                let (file, offset, len) = match part {
                    update::Part::DeltaIndex => (&index, 0, fs::metadata(&index)?.len()),
                    update::Part::Pack { offset, len } => (&pack, offset, len),
                    update::Part::Index | update::Part::Artifact => {
                        return Err(std::io::Error::other(
                            "a delta install asked for the full release",
                        ));
                    }
                };
                counter.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                let mut f = fs::File::open(file)?;
                f.seek(std::io::SeekFrom::Start(offset))?;
                Ok(Box::new(f.take(len)))
            };
            update::install(
                &manifest,
                &mut open,
                &device,
                Timestamp::now(),
                &client,
                &selection,
            )
            .map(drop)
            .map_err(|e| e.to_string())
        }
        "https" => {
            // hearthd's download: each read streams from a tokio task into
            // a channel, and the install reads it (as the agent does).
            let ca = PathBuf::from(swu);
            let verified =
                update_manifest::verify(&manifest, &root, &facts, Timestamp::now()).unwrap();
            let artifact = verified.manifest().artifact.clone();
            // hearthd's runtime is current-thread: one thread drives it.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let driver = std::thread::spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            });
            let fetcher = update::download::Fetcher::new(
                &ca,
                Duration::from_secs(10),
                Duration::from_secs(60),
                3,
            )
            .unwrap();
            let result = install(&mut |part| {
                let (urls, size) = match part {
                    update::Part::Index => (artifact.index.urls.clone(), artifact.index.size),
                    update::Part::Artifact => (artifact.urls.clone(), artifact.size),
                    update::Part::DeltaIndex | update::Part::Pack { .. } => {
                        return Err(std::io::Error::other("no delta release here"));
                    }
                };
                let (sink, reader) = update::download::ChannelReader::pair();
                let fetcher = fetcher.clone();
                handle.spawn(async move { fetcher.stream(&urls, size, sink, |_| {}).await });
                Ok(Box::new(reader))
            });
            drop(stop);
            let _ = driver.join();
            result
        }
        "raw" => {
            let request = swupdate_rs::InstallRequest {
                software_set: selection.software_set.clone(),
                running_mode: selection.running_mode.clone(),
                ..Default::default()
            };
            client
                .install(&request, fs::File::open(swu).unwrap())
                .map(drop)
                .map_err(|e| e.to_string())
        }
        _ => install(&mut |part| match part {
            update::Part::Index => Ok(Box::new(std::io::Cursor::new(index.clone()))),
            update::Part::Artifact => Ok(Box::new(fs::File::open(swu)?)),
            update::Part::DeltaIndex | update::Part::Pack { .. } => {
                Err(std::io::Error::other("no delta release here"))
            }
        }),
    };
    let elapsed = started.elapsed();
    if let Err(e) = done {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .to_owned();
    println!("seconds={}", elapsed.as_secs_f64());
    println!("vmhwm_kib={hwm}");
    println!(
        "fetched={}",
        fetched.load(std::sync::atomic::Ordering::Relaxed)
    );
}
