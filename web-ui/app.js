// Hearth web UI: one small script for every page, no framework, no inline
// code (the Content-Security-Policy forbids it). The JSON API is described in
// api.yaml.
'use strict';

let csrfToken = null;
// Pages behind the login load their CSRF token first; state-changing calls
// wait for it, so a form can be wired (and used) before it arrives.
let session = null;

async function api(method, path, body) {
  if (session && method !== 'GET') await session;
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (csrfToken && method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  let data = {};
  try { data = await response.json(); } catch (_) { /* empty body */ }
  // Only a missing or expired session means "log in again"; other 401s
  // (a wrong current password) are answers to show on the page.
  if (response.status === 401 && data.error === 'not_logged_in') { window.location.assign('/login'); throw new Error('login needed'); }
  if (response.status === 403 && data.error === 'not_set_up') { window.location.assign('/setup'); throw new Error('setup needed'); }
  return { status: response.status, data };
}

function show(id, text) {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}

function errorText(data) {
  return (data && data.message) || 'Something went wrong. Reload the page and try again.';
}

function wirePasswordToggles() {
  for (const button of document.querySelectorAll('button.toggle')) {
    button.addEventListener('click', () => {
      const input = document.getElementById(button.dataset.toggle);
      const visible = input.type === 'password';
      input.type = visible ? 'text' : 'password';
      button.textContent = visible ? 'Hide' : 'Show';
      button.setAttribute('aria-pressed', String(visible));
    });
  }
}

async function loadSession() {
  const { data } = await api('GET', '/api/session');
  csrfToken = data.csrf_token;
}

function wireLogout() {
  const button = document.getElementById('logout');
  if (!button) return;
  button.addEventListener('click', async () => {
    await api('POST', '/api/logout', {});
    window.location.assign('/login');
  });
}

// Every page wires its forms before it awaits anything: a form submitted
// before its handler exists would be sent by the browser itself.
async function setupPage() {
  document.getElementById('setup-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    show('form-error', '');
    const { status, data: reply } = await api('POST', '/api/setup', {
      setup_code: document.getElementById('setup-code').value,
      password: document.getElementById('new-password').value,
      password_confirm: document.getElementById('confirm-password').value,
    });
    if (status === 201) { window.location.assign('/'); return; }
    show('form-error', errorText(reply));
  });
  const { data } = await api('GET', '/api/state');
  for (const span of document.querySelectorAll('.min-length')) span.textContent = data.password_min_length;
}

function loginPage() {
  document.getElementById('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    show('form-error', '');
    const response = await fetch('/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ password: document.getElementById('password').value }),
      credentials: 'same-origin',
    });
    let reply = {};
    try { reply = await response.json(); } catch (_) { /* empty */ }
    if (response.ok) { window.location.assign('/'); return; }
    if (reply.error === 'not_set_up') { window.location.assign('/setup'); return; }
    show('form-error', errorText(reply));
  });
}

// The vendor's security contact as a link (only mailto: and https:, which
// the vendor file validation allows), the address alone as its text.
function showContact(address) {
  const element = document.getElementById('disclosure-contact');
  if (!/^(mailto|https):/.test(address || '')) { element.textContent = address || ''; return; }
  const link = document.createElement('a');
  link.href = address;
  link.textContent = address.replace(/^mailto:/, '');
  element.replaceChildren(link);
}

function renderDashboard(data) {
  show('product-name', data.product.name);
  show('model', data.product.model);
  show('hardware-revision', data.product.hardware_revision);
  show('firmware-version', data.firmware_version);
  show('support-end', data.support.end_date + ' (' + data.support.headline + ')');
  showContact(data.disclosure.contact);
  renderUpdate(data.update);
  const notice = document.getElementById('support-notice');
  notice.hidden = data.support.state === 'inside';
  notice.textContent = data.support.sentence;
  show('plug-state', data.plug.on ? 'on' : 'off');
  const toggle = document.getElementById('plug-toggle');
  toggle.setAttribute('aria-pressed', String(data.plug.on));
  toggle.textContent = data.plug.on ? 'Switch off' : 'Switch on';
  toggle.dataset.on = String(data.plug.on);
  toggle.disabled = false;
}

// The update card: state sentence, progress bar while downloading and
// installing, the reboot notice (EN 303 645 5.3-12), release notes and
// whether it is a security fix (5.3-11).
function renderUpdate(update) {
  show('update-status', update.message);
  const busy = ['downloading', 'installing'].includes(update.state);
  document.getElementById('update-progress-row').hidden = !busy;
  if (busy) {
    const percent = update.progress || 0;
    document.getElementById('update-progress').value = percent;
    show('update-percent', percent + ' %');
  }
  const reboot = document.getElementById('update-reboot');
  reboot.hidden = !['waiting-to-reboot', 'rebooting'].includes(update.state);
  reboot.textContent = update.state === 'rebooting'
    ? 'The device is about to restart to finish the update (at ' + update.until + ' UTC). It will be back in a few minutes.'
    : 'The device will restart at ' + (update.until || '') + ' UTC to finish the update.';
  const release = update.release;
  document.getElementById('update-release').hidden = !release;
  if (release) {
    show('update-kind', (release.security ? 'Security update ' : 'Update ') + release.version + '.');
    const notes = document.getElementById('update-notes');
    if (/^https:/.test(release.release_notes || '')) notes.href = release.release_notes; else notes.hidden = true;
  }
  document.getElementById('update-actions').hidden = update.state !== 'available';
  const last = document.getElementById('update-last');
  last.hidden = !update.last_result;
  if (update.last_result) last.textContent = 'Last update: ' + update.last_result.detail + ' (' + update.last_result.time + ').';
}

async function refreshDashboard() {
  const { status, data } = await api('GET', '/api/dashboard');
  if (status === 200) renderDashboard(data);
}

async function dashboardPage() {
  session = loadSession();
  wireLogout();
  document.getElementById('plug-toggle').addEventListener('click', async (event) => {
    const on = event.currentTarget.dataset.on !== 'true';
    const { status, data: reply } = await api('PUT', '/api/plug', { on });
    if (status !== 200) { show('form-error', errorText(reply)); return; }
    const { data: fresh } = await api('GET', '/api/dashboard');
    renderDashboard(fresh);
  });
  document.getElementById('update-install').addEventListener('click', async () => {
    const { data: reply } = await api('POST', '/api/update/install', {});
    show('update-result', reply.message || errorText(reply));
    refreshDashboard();
  });
  document.getElementById('update-postpone').addEventListener('click', async () => {
    const days = Number(document.getElementById('update-postpone-days').value);
    const { data: reply } = await api('POST', '/api/update/postpone', { days });
    show('update-result', reply.message || errorText(reply));
    refreshDashboard();
  });
  const { data } = await api('GET', '/api/dashboard');
  renderDashboard(data);
  // Progress and the reboot notice change on their own.
  setInterval(refreshDashboard, 2000);
}

async function settingsPage() {
  session = loadSession();
  wireLogout();
  document.getElementById('password-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    show('password-result', '');
    const { status, data } = await api('POST', '/api/password', {
      current_password: document.getElementById('current-password').value,
      password: document.getElementById('new-password').value,
      password_confirm: document.getElementById('confirm-password').value,
    });
    show('password-result', status === 200 ? 'Password changed. Other browsers have been logged out.' : errorText(data));
    document.getElementById('password-result').className = status === 200 ? '' : 'error';
    if (status === 200) event.target.reset();
  });

  // Both forms save the whole settings object, as the page shows it.
  async function saveSettings(resultId) {
    const start = document.getElementById('window-start').value;
    const end = document.getElementById('window-end').value;
    const window = start === '' && end === '' ? null : { start_hour: Number(start), end_hour: Number(end) };
    const { status, data } = await api('PUT', '/api/settings', {
      automatic_updates: document.getElementById('automatic-updates').checked,
      maintenance_window: window,
      fleet_plug_commands: document.getElementById('fleet-plug-commands').checked,
    });
    show(resultId, status === 200 ? 'Saved.' : errorText(data));
  }
  document.getElementById('updates-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    await saveSettings('updates-result');
  });
  document.getElementById('remote-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    await saveSettings('remote-result');
  });

  const { data: state } = await api('GET', '/api/state');
  for (const span of document.querySelectorAll('.min-length')) span.textContent = state.password_min_length;
  const { data: settings } = await api('GET', '/api/settings');
  document.getElementById('automatic-updates').checked = settings.automatic_updates;
  document.getElementById('fleet-plug-commands').checked = settings.fleet_plug_commands;
  if (settings.maintenance_window) {
    document.getElementById('window-start').value = settings.maintenance_window.start_hour;
    document.getElementById('window-end').value = settings.maintenance_window.end_hour;
  }
  // Saving before the current setting is shown would save the page's default.
  document.getElementById('save-updates').disabled = false;
  document.getElementById('save-remote').disabled = false;
}

const pages = { setup: setupPage, login: loginPage, dashboard: dashboardPage, settings: settingsPage };

document.addEventListener('DOMContentLoaded', () => {
  wirePasswordToggles();
  const run = pages[document.body.dataset.page];
  if (run) {
    Promise.resolve(run()).catch((error) => show('form-error', error.message));
  }
});
