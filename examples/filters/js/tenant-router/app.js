// tenant-router: a Ferrox filter that admits requests per tenant and tells the upstream which
// tenant (and which shard) it serves.
//
// The tenant comes from a header (`x-tenant: acme`) or from the first path segment
// (`/acme/orders/7`, forwarded as `/orders/7`). Unknown or blocked tenants are refused (403), a
// tenant may be limited to some path prefixes, and admitted requests go upstream with
// `x-tenant-id` and the tenant's shard in `x-tenant-shard`. The response carries `x-tenant`.
//
// Configuration (JSON):
//   {
//     "source": "header",            // or "path"
//     "header": "x-tenant",          // with source "header"
//     "tenants": {
//       "acme":   { "shard": "eu-1", "allow": ["/orders", "/invoices"] },
//       "globex": { "shard": "us-2" },
//       "initech": { "blocked": true }
//     },
//     "default_tenant": null,        // tenant for requests naming none (else 400)
//     "shard_header": "x-tenant-shard",
//     "fault_injection": false       // true: honour `x-ferrox-fault: raise|loop` (for testing the
//                                    // route's on_error policy; never in production)
//   }
//
// Host services used (grants): log.

import { log } from 'ferrox:filter/log@0.1.0';

const FIELDS = ['source', 'header', 'tenants', 'default_tenant', 'shard_header', 'fault_injection'];
const encoder = new TextEncoder();
let config = null;

function deny(status, message) {
  return {
    tag: 'respond',
    val: {
      status,
      headers: [['content-type', 'application/json']],
      body: encoder.encode(JSON.stringify({ error: message })),
    },
  };
}

function parseConfig(text) {
  let raw;
  try {
    raw = JSON.parse(text || '{}');
  } catch (e) {
    throw `config is not valid JSON: ${e.message}`;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw 'config must be an object';
  }
  const unknown = Object.keys(raw).filter((k) => !FIELDS.includes(k));
  if (unknown.length) throw `unknown config field(s): ${unknown.join(', ')}`;
  const c = {
    source: raw.source ?? 'header',
    header: (raw.header ?? 'x-tenant').toLowerCase(),
    tenants: new Map(),
    defaultTenant: raw.default_tenant ?? null,
    shardHeader: raw.shard_header ?? 'x-tenant-shard',
    faultInjection: raw.fault_injection ?? false,
  };
  if (c.source !== 'header' && c.source !== 'path') throw '`source` must be "header" or "path"';
  if (typeof raw.tenants !== 'object' || raw.tenants === null || !Object.keys(raw.tenants).length) {
    throw '`tenants` must be a non-empty object of tenant -> settings';
  }
  for (const [name, t] of Object.entries(raw.tenants)) {
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(name)) throw `tenants.${name}: not a valid tenant name`;
    if (t === null || typeof t !== 'object') throw `tenants.${name}: must be an object`;
    const allow = t.allow ?? null;
    if (allow !== null && !(Array.isArray(allow) && allow.every((p) => typeof p === 'string' && p.startsWith('/')))) {
      throw `tenants.${name}.allow: must be a list of path prefixes starting with /`;
    }
    c.tenants.set(name, { shard: t.shard ?? null, allow, blocked: t.blocked === true });
  }
  if (c.defaultTenant !== null && !c.tenants.has(c.defaultTenant)) {
    throw `default_tenant: ${c.defaultTenant} is not one of the tenants`;
  }
  if (typeof c.faultInjection !== 'boolean') throw '`fault_injection` must be true or false';
  return c;
}

function allowed(prefixes, path) {
  return prefixes === null || prefixes.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`));
}

export function init(text) {
  config = parseConfig(text);
}

export function onRequest(req) {
  if (config.faultInjection) {
    const fault = req.header('x-ferrox-fault');
    if (fault === 'raise') throw new Error('fault injected by x-ferrox-fault: raise');
    if (fault === 'loop') for (;;) {}
  }
  let path = req.path();
  let name;
  if (config.source === 'header') {
    name = req.header(config.header);
  } else {
    const m = /^\/([^/]+)(\/.*)?$/.exec(path);
    if (m && config.tenants.has(m[1])) {
      name = m[1];
      path = m[2] ?? '/';
      req.setPath(path);
    }
  }
  name = name ?? config.defaultTenant;
  if (name === undefined || name === null) return deny(400, 'no tenant in the request');
  const tenant = config.tenants.get(name);
  if (!tenant) return deny(403, 'unknown tenant');
  if (tenant.blocked) {
    log('warn', `blocked tenant ${name}`);
    return deny(403, 'tenant is blocked');
  }
  if (!allowed(tenant.allow, path)) return deny(403, 'path not allowed for this tenant');
  req.setHeader('x-tenant-id', name);
  if (tenant.shard !== null) req.setHeader(config.shardHeader, tenant.shard);
  else req.removeHeader(config.shardHeader);
  req.setContext('tenant', name);
  return { tag: 'continue' };
}

export function onResponse(req, resp) {
  const name = req.context('tenant');
  if (name !== undefined) resp.setHeader('x-tenant', name);
}
