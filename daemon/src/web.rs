//! The HTTPS server: the device's only HTTP server (the update download is
//! an HTTPS client, in `update::download`).
//!
//! `router()` builds the whole application without a socket, so tests can
//! call it directly; `serve()` puts it behind rustls on a listener.

use std::sync::Arc;
use std::time::Duration;

use std::net::IpAddr;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post, put};
use credentials::Password;
use credentials::claim::{ChangeError, ClaimError, Status};
use credentials::session::{COOKIE_NAME, SessionConfig, SessionError, SessionInfo};
use credentials::trusted::TRUSTED_COOKIE_NAME;
use disclosure::VendorFile;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::access::{AccessError, Client, Welcome};
use crate::app::AppState;
use crate::connections::{self, Acceptor, Admitted, Connections, SlotHandle};
use crate::settings::Settings;

/// hyper's own header timeout; the whole-request deadline of
/// `connections` is the one that counts.
const HEADER_TIMEOUT: Duration = connections::REQUEST_DEADLINE;
/// How long open connections get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

type Shared = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/state", get(api_state))
        .route("/setup", post(api_setup))
        .route("/login", post(api_login))
        .route("/logout", post(api_logout))
        .route("/session", get(api_session))
        .route("/dashboard", get(api_dashboard))
        .route("/plug", put(api_plug))
        .route("/password", post(api_password))
        .route("/settings", get(api_settings).put(api_put_settings))
        .route("/update", get(api_update))
        .route("/update/install", post(api_update_install))
        .route("/update/postpone", post(api_update_postpone))
        .fallback(api_not_found);
    Router::new()
        .route("/", get(dashboard_page))
        .route("/settings", get(settings_page))
        .route("/setup", get(setup_page))
        .route("/login", get(login_page))
        .route("/security", get(security_page))
        .route("/.well-known/security.txt", get(security_txt))
        .route("/healthz", get(health))
        .route("/assets/style.css", get(stylesheet))
        .route("/assets/app.js", get(script))
        .nest("/api", api)
        .with_state(state)
        .layer(axum::middleware::from_fn(same_origin))
        .layer(axum::middleware::from_fn(whole_request))
        .layer(axum::middleware::map_response(security_headers))
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

// ---- pages ----------------------------------------------------------------

/// Pages behind the login: before the claim they send the owner to setup,
/// without a session to the login page.
fn protected_page(state: &AppState, jar: &CookieJar, page: &'static str) -> Response {
    match state.access.session(jar.session(), None) {
        Ok(_) => Html(page).into_response(),
        Err(AccessError::NotSetUp) => Redirect::to("/setup").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

async fn dashboard_page(State(state): Shared, jar: CookieJar) -> Response {
    protected_page(&state, &jar, include_str!("../../web-ui/index.html"))
}

async fn settings_page(State(state): Shared, jar: CookieJar) -> Response {
    protected_page(&state, &jar, include_str!("../../web-ui/settings.html"))
}

async fn setup_page(State(state): Shared) -> Response {
    match state.access.status() {
        Status::Unclaimed => Html(include_str!("../../web-ui/setup.html")).into_response(),
        _ => Redirect::to("/login").into_response(),
    }
}

async fn login_page(State(state): Shared) -> Response {
    match state.access.status() {
        Status::Unclaimed => Redirect::to("/setup").into_response(),
        _ => Html(include_str!("../../web-ui/login.html")).into_response(),
    }
}

async fn security_page(State(state): Shared) -> Html<String> {
    let mut section =
        disclosure::security_page::html_section(&state.vendor, &state.firmware_version, today());
    if let Some(marker) = &state.development_keys {
        section.insert_str(
            0,
            &format!(
                "<p class=\"error\" id=\"development-keys\" role=\"alert\">{}</p>\n",
                disclosure::security_page::escape(marker)
            ),
        );
    }
    Html(include_str!("../../web-ui/security.html").replace("<!--SECURITY-SECTION-->", &section))
}

async fn security_txt(State(state): Shared) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.vendor.security_txt(today()),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../web-ui/style.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../web-ui/app.js"),
    )
}

async fn health(State(state): Shared) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "firmware_version": state.firmware_version }))
}

// ---- the JSON API (web-ui/api.yaml) -----------------------------------------

/// An API refusal: a status, a stable code and a sentence for the owner.
struct ApiError(AccessError);

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            AccessError::NotSetUp => StatusCode::FORBIDDEN,
            AccessError::Broken(_) => StatusCode::SERVICE_UNAVAILABLE,
            AccessError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            AccessError::Claim(ClaimError::AlreadyClaimed) => StatusCode::CONFLICT,
            AccessError::Claim(ClaimError::WrongCode) | AccessError::Login(_) => {
                StatusCode::UNAUTHORIZED
            }
            AccessError::Change(ChangeError::WrongPassword) => StatusCode::UNAUTHORIZED,
            AccessError::Claim(_) | AccessError::Change(_) => StatusCode::BAD_REQUEST,
            AccessError::Session(SessionError::CsrfMismatch) => StatusCode::FORBIDDEN,
            AccessError::Session(_) => StatusCode::UNAUTHORIZED,
            AccessError::Store(_) | AccessError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = Json(json!({ "error": self.0.code(), "message": self.0.to_string() }));
        let mut response = (status, body).into_response();
        if let AccessError::Throttled(throttled) = &self.0 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, throttled.retry_after_secs().into());
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 wants a challenge on every 401. The scheme is our own
            // session login, so no browser offers a Basic-auth dialog.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Session realm=\"hearth\""),
            );
        }
        response
    }
}

fn storage_error(error: crate::persist::StoreError) -> ApiError {
    ApiError(AccessError::Store(error))
}

/// A JSON request body whose rejection is an API error like any other:
/// 415 without `Content-Type: application/json` (which also keeps plain
/// cross-site form posts out), 400 for anything that is not the documented
/// shape.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                let (status, code) = match rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                    }
                    _ => (StatusCode::BAD_REQUEST, "bad_request"),
                };
                let message = format!(
                    "The request could not be read ({}). Send the JSON body that api.yaml describes.",
                    rejection.body_text()
                );
                Err((status, Json(json!({ "error": code, "message": message }))).into_response())
            }
        }
    }
}

/// The session and trusted-browser cookies, read from the request.
struct CookieJar {
    session: Option<String>,
    trusted: Option<String>,
}

impl CookieJar {
    fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CookieJar {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let cookie = |wanted: &str| {
            parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| *name == wanted)
                .map(|(_, value)| value.to_owned())
        };
        Ok(CookieJar {
            session: cookie(COOKIE_NAME),
            trusted: cookie(TRUSTED_COOKIE_NAME),
        })
    }
}

/// Who sent a request, for the throttle: the address and, when present,
/// the trusted-browser cookie.
struct Requester(Client);

impl<S: Send + Sync> FromRequestParts<S> for Requester {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ClientAddr(addr) = ClientAddr::from_request_parts(parts, state).await?;
        let Ok(jar) = CookieJar::from_request_parts(parts, state).await;
        Ok(Requester(Client {
            addr,
            trusted_cookie: jar.trusted,
        }))
    }
}

/// The client's address, put on each request by `serve`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// A logged-in request; state-changing methods must also carry the
/// session's CSRF token in `X-CSRF-Token`.
struct Owner {
    session: SessionInfo,
    token: String,
}

impl FromRequestParts<Arc<AppState>> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Ok(jar) = CookieJar::from_request_parts(parts, state).await;
        let csrf = if parts.method == Method::GET || parts.method == Method::HEAD {
            None
        } else {
            Some(
                parts
                    .headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        };
        let session = state.access.session(jar.session(), csrf)?;
        let token = jar.session.unwrap_or_default();
        Ok(Owner { session, token })
    }
}

fn with_session(status: StatusCode, welcome: &Welcome, config: &SessionConfig) -> Response {
    let session = &welcome.session;
    let mut response =
        (status, Json(json!({ "csrf_token": session.csrf.as_str() }))).into_response();
    let trusted = welcome.trusted.as_ref().map(|t| t.set_cookie());
    for cookie in std::iter::once(session.token.set_cookie(config)).chain(trusted) {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn api_not_found() -> Response {
    let body =
        json!({ "error": "not_found", "message": "There is no such API call; see api.yaml." });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn api_state(State(state): Shared) -> Json<serde_json::Value> {
    let status = state.access.status();
    let broken = state.access.broken_advice();
    Json(json!({
        "status": status,
        "password_min_length": state.access.password_min_length(),
        "broken": broken,
        "product": product_json(&state.vendor),
        "firmware_version": state.firmware_version,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    setup_code: String,
    password: String,
    password_confirm: String,
}

async fn api_setup(
    State(state): Shared,
    Requester(client): Requester,
    Body(request): Body<SetupRequest>,
) -> Result<Response, ApiError> {
    let welcome = state
        .access
        .claim(
            &client,
            request.setup_code,
            Password::new(request.password),
            Password::new(request.password_confirm),
        )
        .await?;
    Ok(with_session(
        StatusCode::CREATED,
        &welcome,
        &state.access.session_config(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    password: String,
}

async fn api_login(
    State(state): Shared,
    Requester(client): Requester,
    Body(request): Body<LoginRequest>,
) -> Result<Response, ApiError> {
    let welcome = state
        .access
        .login(&client, Password::new(request.password))
        .await?;
    Ok(with_session(
        StatusCode::OK,
        &welcome,
        &state.access.session_config(),
    ))
}

async fn api_logout(State(state): Shared, owner: Owner) -> Response {
    state.access.logout(&owner.token);
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&credentials::session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn api_session(owner: Owner) -> Json<serde_json::Value> {
    Json(json!({ "csrf_token": owner.session.csrf.as_str() }))
}

fn product_json(vendor: &VendorFile) -> serde_json::Value {
    json!({
        "vendor": vendor.vendor.name,
        "name": vendor.product.name,
        "model": vendor.product.model,
        "hardware_revision": vendor.product.hardware_revision,
    })
}

async fn api_dashboard(State(state): Shared, _owner: Owner) -> Json<serde_json::Value> {
    let vendor = &state.vendor;
    let support = vendor.support_status(today());
    let settings = state.settings.get();
    let update = update_json(&state);
    Json(json!({
        "product": product_json(vendor),
        "firmware_version": state.firmware_version,
        "support": {
            "end_date": support.end_date.to_string(),
            "state": support.state,
            "headline": support.headline(),
            "sentence": support.sentence(&vendor.vendor.name),
        },
        "disclosure": {
            "contact": vendor.disclosure.contacts.first(),
            "policy_url": vendor.disclosure.policy_url,
        },
        "update": update,
        "automatic_updates": settings.automatic_updates,
        "plug": state.plug.state(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlugRequest {
    on: bool,
}

async fn api_plug(
    State(state): Shared,
    _owner: Owner,
    Body(request): Body<PlugRequest>,
) -> Result<Json<crate::plug::PlugState>, ApiError> {
    state
        .plug
        .switch(request.on)
        .map(Json)
        .map_err(|error| match error {
            crate::plug::PlugError::Store(error) => storage_error(error),
            relay => ApiError(AccessError::Internal(relay.to_string())),
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    current_password: String,
    password: String,
    password_confirm: String,
}

async fn api_password(
    State(state): Shared,
    Requester(client): Requester,
    owner: Owner,
    Body(request): Body<PasswordRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .access
        .change_password(
            &client,
            &owner.session,
            Password::new(request.current_password),
            Password::new(request.password),
            Password::new(request.password_confirm),
        )
        .await?;
    Ok(Json(json!({ "changed": true })))
}

/// The update status with a sentence for the dashboard.
fn update_json(state: &AppState) -> serde_json::Value {
    match &state.updates {
        Some(updates) => {
            let status = updates.status();
            let mut value = serde_json::to_value(&status).unwrap_or_default();
            value["message"] = status.sentence().into();
            value
        }
        None => json!({
            "state": "unavailable",
            "automatic": state.settings.get().automatic_updates,
            "message": "This device is not set up for automatic updates (no [update] configuration).",
        }),
    }
}

async fn api_update(State(state): Shared, _owner: Owner) -> Json<serde_json::Value> {
    Json(update_json(&state))
}

/// An update request the agent refused: 409 with its sentence.
fn update_refused(message: String) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({ "error": "update", "message": message })),
    )
        .into_response()
}

fn no_updates() -> Response {
    update_refused("This device is not set up for automatic updates.".into())
}

async fn api_update_install(State(state): Shared, _owner: Owner) -> Response {
    let Some(updates) = &state.updates else {
        return no_updates();
    };
    match updates.install_now().await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({ "message": "The update is being installed." })),
        )
            .into_response(),
        Err(message) => update_refused(message),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostponeRequest {
    days: u32,
}

async fn api_update_postpone(
    State(state): Shared,
    _owner: Owner,
    Body(request): Body<PostponeRequest>,
) -> Response {
    let Some(updates) = &state.updates else {
        return no_updates();
    };
    match updates.postpone(request.days).await {
        Ok(message) => Json(json!({ "message": message })).into_response(),
        Err(message) => update_refused(message),
    }
}

async fn api_settings(State(state): Shared, _owner: Owner) -> Json<Settings> {
    Json(state.settings.get())
}

async fn api_put_settings(
    State(state): Shared,
    _owner: Owner,
    Body(settings): Body<Settings>,
) -> Result<Json<Settings>, Response> {
    if let Some(window) = settings.maintenance_window
        && !window.is_valid()
    {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "bad_request",
                "message": "The maintenance window needs a start and an end hour from 0 to 23.",
            })),
        )
            .into_response());
    }
    state
        .settings
        .set(settings.clone())
        .map_err(|e| storage_error(e).into_response())?;
    if let Some(updates) = &state.updates {
        updates.settings_changed();
    }
    Ok(Json(settings))
}

/// Reads the whole body (at most `MAX_BODY`) before any handler runs, so a
/// connection counts as busy only once its request is complete, and a
/// slow or oversized body costs the sender, not the device.
async fn whole_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let slot = request.extensions().get::<SlotHandle>().cloned();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, connections::MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            let body = json!({
                "error": "too_large",
                "message": format!(
                    "The request body is larger than {} bytes or was cut off. Send the JSON body that api.yaml describes.",
                    connections::MAX_BODY
                ),
            });
            return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
        }
    };
    if let Some(slot) = &slot {
        slot.busy();
    }
    let response = next
        .run(axum::extract::Request::from_parts(parts, body.into()))
        .await;
    if let Some(slot) = &slot {
        slot.idle();
    }
    response
}

/// A state-changing request must come from the device's own pages: when the
/// browser says where it comes from (`Origin`), that must be this host.
async fn same_origin(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe {
        let headers = request.headers();
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let origin_host = origin.strip_prefix("https://");
            if origin_host.is_none() || origin_host != host {
                let body = json!({
                    "error": "cross_origin",
                    "message": "This request came from another web site and was refused.",
                });
                return (StatusCode::FORBIDDEN, Json(body)).into_response();
            }
        }
    }
    next.run(request).await
}

/// Every response forbids inline script, framing and sniffing: the pages
/// load only their own assets.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Serves `app` over TLS on `listener` until `shutdown` turns true, then
/// gives open connections a moment to finish. The slots, deadlines and
/// limits are `connections`'.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let (_accepting, mut admitted) = match Acceptor::start(listener, Connections::new()) {
        Ok(started) => started,
        Err(error) => return tracing::error!(%error, "cannot start accepting connections"),
    };
    loop {
        let Admitted {
            stream: tcp,
            peer,
            slot,
        } = tokio::select! {
            admitted = admitted.recv() => match admitted {
                Some(admitted) => admitted,
                None => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        let acceptor = acceptor.clone();
        let handle = slot.handle();
        let app = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ClientAddr(peer.ip()));
                request.extensions_mut().insert(handle.clone());
                request
            });
        let service = TowerToHyperService::new(app);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let serve = async {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(error) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                };
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let connection = http.serve_connection(TokioIo::new(tls), service);
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            };
            tokio::select! {
                () = serve => {}
                ended = slot.ended() => tracing::debug!(%peer, ?ended, "connection closed early"),
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("closed connections still open after {DRAIN_TIMEOUT:?}");
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}
