//! The device's MQTT link to the vendor's fleet service.
//!
//! One task owns the rumqttc event loop. It connects over mutual TLS
//! ([`tls`]), publishes the retained device-info, status and Home Assistant
//! discovery messages after every connect, subscribes to the model's
//! release topic and the device's command topic, and carries out commands
//! through the same [`crate::plug::Plug`] the web UI uses. When the
//! connection drops it waits a jittered, growing delay ([`backoff`]) before
//! polling again, because rumqttc itself would reconnect at once.
//!
//! The topic scheme, payloads and broker set-up are in `docs/mqtt.md`.
//!
//! The device certificate is either provisioned at the factory (paths in
//! the configuration) or requested by the device itself ([`enrol`]: key and
//! CSR made on first boot, the link waits for the signed certificate).
//!
//! Current limitations: release manifests are only logged (the update work
//! verifies and acts on them); carrying the CSR to an enrolment service and
//! the certificate back is left to the vendor's provisioning step.

pub mod backoff;
pub mod command;
pub mod enrol;
pub mod messages;
pub mod tls;
pub mod topics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, SubAck, SubscribeReasonCode, TlsConfiguration, Transport,
};
use serde::Deserialize;
use tokio::sync::watch;

use crate::app::AppState;
use backoff::Backoff;
use command::{Action, Refusal};
use messages::LastError;
use topics::{Incoming, Segment, Topics};

/// The `[fleet]` section of the configuration. Without it the device makes
/// no MQTT connection at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The broker's host name or IP address; it must match the broker
    /// certificate's subject alternative names.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The vendor's broker CA (PEM). It is the only CA trusted for MQTT.
    pub ca_file: PathBuf,
    /// The device's client certificate (PEM, leaf first) and its key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set for the CSR flow: on first boot the device makes `key_file` and
    /// writes a certificate signing request here, then waits until the
    /// vendor's enrolment step installs `cert_file`.
    pub csr_file: Option<PathBuf>,
    /// The device id; it must equal the certificate's CN, because the
    /// broker's ACLs are keyed on the CN.
    pub device_id: String,
    /// The model used in the release topic; the vendor file's model
    /// designation when absent.
    pub model: Option<String>,
    #[serde(default = "default_topic_root")]
    pub topic_root: String,
    /// Home Assistant's discovery prefix; `""` turns discovery off.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// The first reconnect window; each failure doubles it up to the max.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_secs: f64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_secs: f64,
}

fn default_port() -> u16 {
    8883
}
fn default_topic_root() -> String {
    "hearth".to_owned()
}
fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}
fn default_keep_alive() -> u64 {
    30
}
fn default_reconnect_initial() -> f64 {
    4.0
}
fn default_reconnect_max() -> f64 {
    300.0
}

/// How often a device in the CSR flow looks for its certificate.
const CERTIFICATE_POLL: Duration = Duration::from_secs(2);

/// Release manifests are small JSON documents; this is far above any real
/// one and keeps rumqttc from buffering whatever a broker sends.
const MAX_INCOMING_PACKET: usize = 256 * 1024;
const MAX_OUTGOING_PACKET: usize = 64 * 1024;
/// How often the status is compared with the device's state, so a switch
/// from the web UI or a claim reaches the status topic.
const STATUS_CHECK: Duration = Duration::from_secs(1);

impl FleetConfig {
    /// Checks the values; on failure, the key (below `fleet.`) and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        if self.host.trim().is_empty() {
            return fail("host", "expected the broker's host name or address".into());
        }
        for (key, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if !path.is_absolute() {
                return fail(key, "expected an absolute path".into());
            }
        }
        if let Some(csr) = &self.csr_file
            && !csr.is_absolute()
        {
            return fail("csr_file", "expected an absolute path".into());
        }
        for (key, value) in [
            ("device_id", Some(&self.device_id)),
            ("model", self.model.as_ref()),
            ("topic_root", Some(&self.topic_root)),
        ] {
            if let Some(value) = value
                && let Err(why) = Segment::try_from(value.as_str())
            {
                return fail(key, format!("cannot be used as an MQTT topic level: {why}"));
            }
        }
        if !self.discovery_prefix.is_empty()
            && let Err(why) = Segment::try_from(self.discovery_prefix.as_str())
        {
            return fail(
                "discovery_prefix",
                format!(
                    "cannot be used as an MQTT topic level: {why}; use \"\" to turn discovery off"
                ),
            );
        }
        if self.keep_alive_secs < 5 {
            return fail("keep_alive_secs", "expected at least 5 seconds".into());
        }
        let initial = self.reconnect_initial_secs;
        let max = self.reconnect_max_secs;
        if !(initial.is_finite() && (0.1..=3600.0).contains(&initial)) {
            return fail(
                "reconnect_initial_secs",
                "expected 0.1 to 3600 seconds".into(),
            );
        }
        if !(max.is_finite() && (initial..=86_400.0).contains(&max)) {
            return fail(
                "reconnect_max_secs",
                "expected at least reconnect_initial_secs and at most 86400 seconds".into(),
            );
        }
        Ok(())
    }

    fn topics(&self, vendor_model: &str) -> Result<Topics, String> {
        let segment = |what: &str, value: &str| {
            Segment::try_from(value).map_err(|why| {
                format!("the {what} {value:?} cannot be used as an MQTT topic level: {why}")
            })
        };
        let model = segment(
            "model (set fleet.model)",
            self.model.as_deref().unwrap_or(vendor_model),
        )?;
        let prefix = match self.discovery_prefix.as_str() {
            "" => None,
            p => Some(segment("discovery prefix", p)?),
        };
        Ok(Topics::new(
            &segment("topic root", &self.topic_root)?,
            &model,
            &segment("device id", &self.device_id)?,
            prefix.as_ref(),
        ))
    }
}

/// Runs the fleet link until `shutdown` turns true. Errors that a retry
/// cannot fix (unreadable certificates) are logged and end the task; the
/// rest of the device keeps working without MQTT.
pub async fn run(config: FleetConfig, state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    if let Some(csr_file) = &config.csr_file {
        match enrol::ensure(&config.key_file, csr_file, &config.device_id) {
            Ok(made) => {
                if made.key {
                    tracing::info!(key = %config.key_file.display(), "made the device's fleet key");
                }
                if made.csr {
                    tracing::info!(csr = %csr_file.display(), "wrote a certificate signing request for the fleet");
                }
            }
            Err(error) => {
                tracing::error!("MQTT is off: {error}");
                return;
            }
        }
        if !wait_for_certificate(&config, csr_file, &mut shutdown).await {
            return;
        }
    }
    let (topics, tls) = match prepare(&config, &state) {
        Ok(ready) => ready,
        Err(message) => {
            tracing::error!("MQTT is off: {message}");
            return;
        }
    };
    let mut options = MqttOptions::new(&config.device_id, &config.host, config.port);
    options
        .set_keep_alive(Duration::from_secs(config.keep_alive_secs))
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
        .set_last_will(LastWill::new(
            &topics.status,
            messages::offline(),
            QoS::AtLeastOnce,
            true,
        ))
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut network = eventloop.network_options();
    network.set_connection_timeout(10);
    eventloop.set_network_options(network);

    let mut link = Link {
        client,
        topics,
        state,
        device_id: config.device_id.clone(),
        last_error: None,
        published: None,
        connected: false,
        plug_rate: command::PlugRate::new(std::time::Instant::now()),
    };
    let backoff = Backoff::new(
        Duration::from_secs_f64(config.reconnect_initial_secs),
        Duration::from_secs_f64(config.reconnect_max_secs),
    );
    tracing::info!(
        broker = %format!("{}:{}", config.host, config.port),
        device = %config.device_id,
        "connecting to the fleet broker"
    );
    // rumqttc's `poll()` is not cancel-safe (a request taken from its
    // channel can be lost), so it runs alone in the driver task and this
    // loop selects over the driver's events instead.
    let (events, mut incoming) = tokio::sync::mpsc::channel(16);
    let driver = tokio::spawn(drive(eventloop, backoff, events));
    let mut status_check = tokio::time::interval(STATUS_CHECK);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = status_check.tick() => link.refresh_status(),
            event = incoming.recv() => match event {
                Some(event) => link.on_event(event),
                None => break,
            },
        }
    }
    link.go_offline(&mut incoming).await;
    driver.abort();
}

/// What the driver task reports to the fleet loop.
#[derive(Debug)]
enum LinkEvent {
    Connected,
    /// The connection failed or dropped; the driver is waiting out a backoff.
    Lost,
    Message(Publish),
    SubAck(SubAck),
    /// Our DISCONNECT went out (a clean shutdown).
    Disconnected,
}

/// Polls the event loop for ever, waiting a jittered backoff after each
/// failure. Ends when the fleet loop stops listening.
async fn drive(
    mut eventloop: EventLoop,
    mut backoff: Backoff,
    events: tokio::sync::mpsc::Sender<LinkEvent>,
) {
    loop {
        let (event, delay) = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(code = ?ack.code, "connected to the fleet broker");
                backoff.reset();
                (Some(LinkEvent::Connected), None)
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                (Some(LinkEvent::Message(publish)), None)
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => (Some(LinkEvent::SubAck(ack)), None),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => (Some(LinkEvent::Disconnected), None),
            Ok(_) => (None, None),
            Err(error) => {
                let delay = backoff.next_delay(backoff::system_random());
                tracing::warn!(
                    error = %describe(&error),
                    attempt = backoff.failures(),
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "MQTT connection failed; retrying after a jittered backoff"
                );
                (Some(LinkEvent::Lost), Some(delay))
            }
        };
        if let Some(event) = event
            && events.send(event).await.is_err()
        {
            return;
        }
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
}

/// Waits until the certificate file exists; false on shutdown.
async fn wait_for_certificate(
    config: &FleetConfig,
    csr_file: &std::path::Path,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut told = false;
    while !config.cert_file.exists() {
        if !told {
            tracing::warn!(
                "MQTT waits for the device certificate: have the request {} signed by the vendor's enrolment service and install the certificate as {}",
                csr_file.display(),
                config.cert_file.display()
            );
            told = true;
        }
        tokio::select! {
            _ = shutdown.changed() => return false,
            _ = tokio::time::sleep(CERTIFICATE_POLL) => {}
        }
    }
    true
}

fn prepare(
    config: &FleetConfig,
    state: &AppState,
) -> Result<(Topics, Arc<rustls::ClientConfig>), String> {
    let topics = config.topics(&state.vendor.product.model)?;
    let tls = tls::client_config(&config.ca_file, &config.cert_file, &config.key_file)
        .map_err(|e| e.to_string())?;
    Ok((topics, tls))
}

/// A sentence for the log; rumqttc's own texts are terse.
fn describe(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => format!(
            "the broker refused the connection ({code:?}); check that this device's certificate is enrolled"
        ),
        ConnectionError::Tls(e) => format!(
            "TLS with the broker failed: {e}; check fleet.ca_file and the device certificate"
        ),
        other => other.to_string(),
    }
}

/// What the device last put in its status, to publish only on change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Published {
    plug_on: bool,
    claimed: bool,
    update: Option<crate::update::status::UpdateStatus>,
}

struct Link {
    client: AsyncClient,
    topics: Topics,
    state: Arc<AppState>,
    device_id: String,
    last_error: Option<LastError>,
    published: Option<Published>,
    connected: bool,
    plug_rate: command::PlugRate,
}

impl Link {
    fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected => {
                self.connected = true;
                if let Some(updates) = &self.state.updates {
                    updates.fleet_connected(true);
                }
                self.on_connect();
            }
            LinkEvent::Lost | LinkEvent::Disconnected => {
                self.connected = false;
                if let Some(updates) = &self.state.updates {
                    updates.fleet_connected(false);
                }
            }
            LinkEvent::SubAck(ack) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::error!(
                        "the broker refused a subscription ({:?}); check its ACL for this device's certificate CN {:?}",
                        ack.return_codes,
                        self.device_id
                    );
                }
            }
            LinkEvent::Message(publish) => self.on_publish(&publish),
        }
    }

    /// After every connect: subscriptions are gone (clean session) and a
    /// restarted broker may have lost the retained messages, so both are
    /// sent again.
    fn on_connect(&mut self) {
        for topic in [&self.topics.release, &self.topics.cmd] {
            if let Err(error) = self.client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                tracing::warn!(%error, topic, "cannot queue an MQTT subscription");
            }
        }
        let mut info = self.state.vendor.device_info(
            &self.state.firmware_version,
            time::OffsetDateTime::now_utc().date(),
        );
        info.development_keys = self.state.development_keys.clone();
        self.publish_retained(&self.topics.info.clone(), info.to_json());
        if let Some(discovery) = self.topics.discovery.clone() {
            let payload = messages::discovery(&self.topics, &self.device_id, &info);
            self.publish_retained(&discovery, payload);
        }
        self.publish_status();
    }

    fn on_publish(&mut self, publish: &Publish) {
        match self.topics.classify(&publish.topic) {
            Incoming::Release => {
                tracing::info!(
                    topic = %publish.topic,
                    bytes = publish.payload.len(),
                    "release manifest received"
                );
                match &self.state.updates {
                    Some(updates) => updates.offer(publish.payload.to_vec()),
                    None => tracing::info!(
                        "automatic updates are not configured ([update]); the manifest is ignored"
                    ),
                }
            }
            Incoming::Command => self.on_command(&publish.payload, publish.retain),
            Incoming::Unexpected => {
                tracing::warn!(topic = %publish.topic, "ignored a message on a topic this device does not use");
            }
        }
    }

    fn on_command(&mut self, payload: &[u8], retained: bool) {
        let result = command::parse(payload, retained).and_then(|command| {
            match self.state.access.status() {
                credentials::claim::Status::Claimed => Ok(command),
                credentials::claim::Status::Unclaimed => Err((command.id, Refusal::NotSetUp)),
                credentials::claim::Status::Broken => Err((command.id, Refusal::Broken)),
            }
        });
        let outcome = result.and_then(|command| match command.action {
            Action::Plug { .. } if !self.state.settings.get().fleet_plug_commands => {
                Err((command.id, Refusal::NotAllowed))
            }
            Action::Plug { on } => match self
                .plug_rate
                .take(std::time::Instant::now())
                .and_then(|()| {
                    self.state
                        .plug
                        .switch(on)
                        .map_err(|error| Refusal::Failed(error.to_string()))
                }) {
                Ok(_) => {
                    tracing::info!(on, command_id = ?command.id, "plug switched by an MQTT command");
                    Ok(())
                }
                Err(refusal) => Err((command.id, refusal)),
            },
        });
        if let Err((command_id, refusal)) = outcome {
            tracing::warn!(
                code = refusal.code(),
                command_id = ?command_id,
                "refused an MQTT command: {refusal}"
            );
            self.last_error = Some(LastError {
                code: refusal.code(),
                message: refusal.to_string(),
                command_id,
                time: messages::now_rfc3339(),
            });
        }
        self.publish_status();
    }

    fn current(&self) -> Published {
        Published {
            plug_on: self.state.plug.state().on,
            claimed: self.state.access.status() == credentials::claim::Status::Claimed,
            update: self.state.updates.as_ref().map(|u| u.status()),
        }
    }

    /// Publishes the status again if the plug or the claim changed from
    /// elsewhere (the web UI).
    fn refresh_status(&mut self) {
        if self.connected && self.published != Some(self.current()) {
            self.publish_status();
        }
    }

    fn publish_status(&mut self) {
        let now = self.current();
        let today = time::OffsetDateTime::now_utc().date();
        let support = self.state.vendor.support_status(today);
        let update = now.update.clone();
        let status = messages::Status {
            schema: messages::STATUS_SCHEMA,
            state: update.as_ref().map_or("idle", |u| u.state.as_str()),
            version: self.state.firmware_version.clone(),
            progress: update.as_ref().and_then(|u| u.progress),
            update,
            last_error: self.last_error.clone(),
            time: messages::now_rfc3339(),
            claimed: now.claimed,
            plug: messages::PlugStatus { on: now.plug_on },
            support: messages::SupportStatus {
                state: support.state,
                end_date: support.end_date.to_string(),
                message: support.sentence(&self.state.vendor.vendor.name),
            },
        };
        let payload = serde_json::to_string(&status).unwrap_or_default();
        self.publish_retained(&self.topics.status.clone(), payload);
        self.published = Some(now);
    }

    fn publish_retained(&self, topic: &str, payload: String) {
        if let Err(error) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, payload)
        {
            tracing::warn!(%error, topic, "cannot queue an MQTT message");
        }
    }

    /// A clean shutdown: the broker does not send the will after a proper
    /// DISCONNECT, so the device says "offline" itself first.
    async fn go_offline(&self, incoming: &mut tokio::sync::mpsc::Receiver<LinkEvent>) {
        if !self.connected {
            return;
        }
        self.publish_retained(&self.topics.status, messages::offline());
        let _ = self.client.try_disconnect();
        let flushed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match incoming.recv().await {
                    Some(LinkEvent::Disconnected) => return true,
                    Some(LinkEvent::Lost) | None => return false,
                    Some(_) => {}
                }
            }
        })
        .await;
        match flushed {
            Ok(true) => tracing::info!("left the fleet broker with status offline"),
            Ok(false) | Err(_) => tracing::warn!(
                "the fleet broker did not take the offline status in time; it will send the last will"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Layer};

    fn load(fleet: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hearth.toml");
        let text = format!(
            "data_dir = \"/data/hearth\"\nvendor_file = \"/usr/lib/hearth/vendor.toml\"\n[web]\nlisten = [\"127.0.0.1:443\"]\n{fleet}"
        );
        std::fs::write(&path, text).expect("write");
        Config::load(&[Layer::explicit(path)]).map_err(|e| e.to_string())
    }

    const GOOD: &str = "[fleet]\nhost = \"mqtt.example.com\"\nca_file = \"/usr/lib/hearth/fleet-ca.pem\"\ncert_file = \"/data/hearth/fleet/device.crt\"\nkey_file = \"/data/hearth/fleet/device.key\"\ndevice_id = \"hrh1-0001\"\n";

    #[test]
    fn without_a_fleet_section_mqtt_is_off() {
        assert!(load("").expect("valid").fleet.is_none());
    }

    #[test]
    fn a_fleet_section_gets_documented_defaults() {
        let fleet = load(GOOD).expect("valid").fleet.expect("fleet");
        assert_eq!(fleet.port, 8883);
        assert_eq!(fleet.topic_root, "hearth");
        assert_eq!(fleet.discovery_prefix, "homeassistant");
        assert_eq!(fleet.model, None);
        let topics = fleet.topics("HRH-1").expect("topics");
        assert_eq!(topics.release, "hearth/HRH-1/release");
        assert_eq!(topics.cmd, "hearth/device/hrh1-0001/cmd");
    }

    #[test]
    fn bad_fleet_values_name_their_key() {
        for (change, key) in [
            ("device_id = \"a/b\"\n", "fleet.device_id"),
            ("device_id = \"#\"\n", "fleet.device_id"),
            ("model = \"x+\"\n", "fleet.model"),
            ("ca_file = \"ca.pem\"\n", "fleet.ca_file"),
            ("key_file = \"key.pem\"\n", "fleet.key_file"),
            ("csr_file = \"device.csr\"\n", "fleet.csr_file"),
            ("host = \" \"\n", "fleet.host"),
            (
                "discovery_prefix = \"home/assistant\"\n",
                "fleet.discovery_prefix",
            ),
            ("keep_alive_secs = 1\n", "fleet.keep_alive_secs"),
            (
                "reconnect_initial_secs = 0.0\n",
                "fleet.reconnect_initial_secs",
            ),
            ("reconnect_max_secs = 0.2\n", "fleet.reconnect_max_secs"),
        ] {
            let field = change.split(' ').next().expect("field");
            let base: String = GOOD
                .lines()
                .filter(|l| !l.starts_with(&format!("{field} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            let err = load(&format!("{base}{change}")).expect_err(change);
            assert!(err.contains(&format!("key `{key}`")), "{change}: {err}");
        }
        let err = load(&format!("{GOOD}brokr = \"x\"\n")).expect_err("unknown key");
        assert!(err.contains("unknown field `brokr`"), "{err}");
    }

    #[test]
    fn an_empty_discovery_prefix_turns_discovery_off() {
        let fleet = load(&format!("{GOOD}discovery_prefix = \"\"\n"))
            .expect("valid")
            .fleet
            .expect("fleet");
        assert_eq!(fleet.topics("M").expect("topics").discovery, None);
    }
}
