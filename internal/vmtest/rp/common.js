// common.js — helpers of the RP's test pages (page.html, flow.html),
// served at /common.js: a log on the page and the console, the RP's JSON
// API, and the page's reports (/report, as page-STEP result lines).

function log(msg) {
  document.getElementById('log').textContent += msg + '\n';
  console.log(msg);
}

// stripNulls drops JSON nulls: WebIDL dictionaries reject null for
// sequence and dictionary members.
function stripNulls(v) {
  if (Array.isArray(v)) return v.map(stripNulls);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = stripNulls(x);
    return out;
  }
  return v;
}

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(body === undefined ? {} : body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(url + ': HTTP ' + r.status + ': ' + text);
  return JSON.parse(text);
}

async function report(step, ok, message) {
  log(step + ' ' + (ok ? 'ok' : 'FAILED') + ' ' + message);
  try { await post('/report', {step, ok, message}); } catch (e) { log('report: ' + e); }
}

function describe(e) {
  return (e && e.name ? e.name + ': ' : '') + (e && e.message ? e.message : String(e));
}
