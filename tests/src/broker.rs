//! A mosquitto with the shipped `broker/` configuration and ACLs, a test
//! PKI from `broker/dev-pki.sh`, TLS with client certificates on a loopback
//! port, and `mosquitto_sub`/`mosquitto_pub` as the vendor's fleet service
//! (CN `hearth-fleet-service`). Used by hearthd's host-mode fleet tests and
//! by the QEMU update tests (where the guest reaches the broker through a
//! `guestfwd` rule at [`GUEST_HOST`]).
//!
//! Needs Debian's `mosquitto`, `mosquitto-clients` and `openssl`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shipped broker configuration.
pub const BROKER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../broker");
/// The fleet service's certificate CN.
pub const SERVICE: &str = "hearth-fleet-service";
/// The address at which a QEMU guest reaches host services (a `guestfwd`
/// rule); the broker certificate names it too.
pub const GUEST_HOST: &str = "10.0.2.100";

// ---- the broker ---------------------------------------------------------

/// Issues `pki/broker.crt` again from the same CA, key, subject and
/// extensions, valid from `since` (`openssl ca -startdate`; `openssl x509`
/// of OpenSSL 3.0 cannot set a start date). Only the server certificate
/// needs it: a TLS client checks the dates of the chain it is sent, not
/// of its trust anchor, and the broker checks client certificates by the
/// host's own clock.
fn backdate_server_certificate(pki: &Path, since: &str) {
    let db = pki.join("backdate");
    std::fs::create_dir_all(&db).expect("CA database directory");
    std::fs::write(db.join("index.txt"), "").expect("CA index");
    std::fs::write(db.join("serial"), "1000\n").expect("CA serial");
    let config = format!(
        "[ca]\ndefault_ca = backdated\n[backdated]\ndatabase = {0}/index.txt\n\
         new_certs_dir = {0}\nserial = {0}/serial\ndefault_md = sha256\npolicy = any\n\
         unique_subject = no\ncopy_extensions = copyall\n[any]\ncommonName = supplied\n\
         organizationName = optional\n",
        db.display()
    );
    std::fs::write(db.join("ca.cnf"), config).expect("CA config");
    let until = crate::utc_date("+30 days", "%Y%m%d%H%M%SZ");
    let csr = db.join("broker.csr");
    let steps: [Vec<std::ffi::OsString>; 2] = [
        vec![
            "x509".into(),
            "-x509toreq".into(),
            "-in".into(),
            pki.join("broker.crt").into(),
            "-signkey".into(),
            pki.join("broker.key").into(),
            "-copy_extensions".into(),
            "copyall".into(),
            "-out".into(),
            csr.clone().into(),
        ],
        vec![
            "ca".into(),
            "-batch".into(),
            "-notext".into(),
            "-config".into(),
            db.join("ca.cnf").into(),
            "-cert".into(),
            pki.join("ca.crt").into(),
            "-keyfile".into(),
            pki.join("ca.key").into(),
            "-in".into(),
            csr.into(),
            "-out".into(),
            pki.join("broker.crt").into(),
            "-startdate".into(),
            since.into(),
            "-enddate".into(),
            until.into(),
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {:?} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A mosquitto with the shipped configuration; killed on drop.
#[derive(Debug)]
pub struct Broker {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Makes the PKI for `clients` (CNs), the ACL file with one release
    /// grant per `(device, model)`, and starts mosquitto.
    pub fn start(clients: &[&str], enrolled: &[(&str, &str)]) -> Broker {
        Broker::start_with(clients, enrolled, None)
    }

    /// [`Broker::start`], with the server certificate (the broker's and the
    /// update server's) valid from `valid_since` (`YYYYMMDDHHMMSSZ`), so that
    /// a device whose clock was set back still accepts it.
    pub fn start_with(
        clients: &[&str],
        enrolled: &[(&str, &str)],
        valid_since: Option<&str>,
    ) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = dir.path().join("pki");
        let mut names = vec![SERVICE];
        names.extend_from_slice(clients);
        let status = Command::new(Path::new(BROKER_DIR).join("dev-pki.sh"))
            .arg(&pki)
            .args(&names)
            .status()
            .expect("run broker/dev-pki.sh (needs openssl)");
        assert!(status.success(), "dev-pki.sh failed");
        if let Some(since) = valid_since {
            backdate_server_certificate(&pki, since);
        }
        let acl = dir.path().join("acl");
        std::fs::copy(Path::new(BROKER_DIR).join("acl.conf"), &acl).expect("copy acl.conf");
        for (device, model) in enrolled {
            let status = Command::new(Path::new(BROKER_DIR).join("acl-add-device.sh"))
                .arg(&acl)
                .args([device, model])
                .status()
                .expect("run acl-add-device.sh");
            assert!(status.success(), "acl-add-device.sh failed");
        }
        let port = crate::free_port();
        let mut conf = std::fs::read_to_string(Path::new(BROKER_DIR).join("mosquitto.conf"))
            .expect("read broker/mosquitto.conf")
            .replace("@PORT@", &port.to_string())
            .replace("@PKI@", &pki.display().to_string())
            .replace("@ACL@", &acl.display().to_string());
        if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&acl).expect("acl")) == 0 {
            // Test only: as root, mosquitto drops to the `mosquitto` user,
            // which cannot read this root-owned temporary PKI.
            conf.push_str("\nuser root\n");
        }
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("write config");
        let mut broker = Broker {
            dir,
            port,
            child: None,
        };
        broker.spawn();
        broker
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("broker log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {addr}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pki(&self, file: &str) -> PathBuf {
        self.dir.path().join("pki").join(file)
    }

    /// The `[fleet]` layer for a device with this certificate CN.
    pub fn fleet_config(&self, device: &str) -> String {
        format!(
            "[fleet]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\ndevice_id = \"{device}\"\nreconnect_initial_secs = 0.5\nreconnect_max_secs = 4.0\n",
            self.port,
            self.pki("ca.crt").display(),
            self.pki(&format!("{device}.crt")).display(),
            self.pki(&format!("{device}.key")).display(),
        )
    }

    /// Arguments that connect a mosquitto client as `identity`.
    pub fn client_args(&self, identity: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "--cafile".into(),
            self.pki("ca.crt").display().to_string(),
        ];
        if let Some(cn) = identity {
            args.extend([
                "--cert".into(),
                self.pki(&format!("{cn}.crt")).display().to_string(),
                "--key".into(),
                self.pki(&format!("{cn}.key")).display().to_string(),
            ]);
        }
        args
    }

    /// Publishes one message as `identity` at QoS 1 and waits for it to be
    /// acknowledged (mosquitto acknowledges refused publishes too).
    pub fn publish(&self, identity: &str, topic: &str, payload: &str, retain: bool) {
        let mut command = Command::new("mosquitto_pub");
        command
            .args(self.client_args(Some(identity)))
            .args(["-q", "1", "-t", topic, "-m", payload]);
        if retain {
            command.arg("-r");
        }
        let output = command.output().expect("run mosquitto_pub");
        assert!(
            output.status.success(),
            "mosquitto_pub as {identity} to {topic} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A subscriber as `identity`, ready when this returns: it has received
    /// a message on `probe`, published by the fleet service.
    pub fn subscribe(&self, identity: &str, topics: &[&str], probe: &str) -> Sub {
        let sub = Sub::start(self, Some(identity), topics);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 0;
        loop {
            n += 1;
            let marker = format!("probe-{n}");
            self.publish(SERVICE, probe, &marker, false);
            if sub
                .wait(Duration::from_millis(500), |m| m.payload == marker)
                .is_some()
            {
                return sub;
            }
            assert!(
                Instant::now() < deadline,
                "subscriber {identity} never became ready; broker log:\n{}",
                self.log()
            );
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- a subscriber ---------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    pub retained: bool,
}

impl Message {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|_| panic!("not JSON on {}: {}", self.topic, self.payload))
    }
}

/// `mosquitto_sub` in the background; every message it prints is kept.
#[derive(Debug)]
pub struct Sub {
    child: Child,
    seen: Arc<Mutex<Vec<Message>>>,
    errors: Arc<Mutex<String>>,
}

impl Sub {
    pub fn start(broker: &Broker, identity: Option<&str>, topics: &[&str]) -> Sub {
        let mut command = Command::new("mosquitto_sub");
        command
            .args(broker.client_args(identity))
            .args(["-q", "1", "-F", "%r|%t|%p"]);
        for topic in topics {
            command.args(["-t", topic]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto_sub (apt-get install mosquitto-clients)");
        let seen: Arc<Mutex<Vec<Message>>> = Arc::default();
        let sink = seen.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, '|');
                let (Some(retain), Some(topic), Some(payload)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                sink.lock().expect("lock").push(Message {
                    topic: topic.to_owned(),
                    payload: payload.to_owned(),
                    retained: retain == "1",
                });
            }
        });
        let errors: Arc<Mutex<String>> = Arc::default();
        let sink = errors.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut all = sink.lock().expect("lock");
                all.push_str(&line);
                all.push('\n');
            }
        });
        Sub {
            child,
            seen,
            errors,
        }
    }

    /// The first message, from the start, that `matches`, waiting up to `limit`.
    pub fn wait(&self, limit: Duration, matches: impl Fn(&Message) -> bool) -> Option<Message> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(m) = self.seen.lock().expect("lock").iter().find(|m| matches(m)) {
                return Some(m.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like `wait`, for messages after the first `skip` ones.
    pub fn wait_after(
        &self,
        skip: usize,
        limit: Duration,
        matches: impl Fn(&Message) -> bool,
    ) -> Option<Message> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(m) = self
                .seen
                .lock()
                .expect("lock")
                .iter()
                .skip(skip)
                .find(|m| matches(m))
            {
                return Some(m.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What `mosquitto_sub` printed on stderr so far.
    pub fn errors(&self) -> String {
        self.errors.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    pub fn all(&self) -> Vec<Message> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits for the process to end (it ends on a refused connection).
    pub fn exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
