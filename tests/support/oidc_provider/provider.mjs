// A real OpenID Connect provider (npm oidc-provider) for movierec's login tests.
// Listens on 127.0.0.1 only. Start it once per provider you need (different ports/clients).
//
//   node provider.mjs [--port N] [--clients JSON] [--pkce required|optional]
//   env fallbacks: OIDC_PORT (default 0 = a free port), OIDC_CLIENTS, OIDC_PKCE (default required)
//
// JSON clients: [{"client_id": "...", "client_secret": "...", "redirect_uris": ["http://127.0.0.1:..."]}]
// (other client metadata passes through; no client_secret = public client, auth method "none").
// Prints "READY <issuer>" on stdout once it accepts connections; SIGTERM/SIGINT stop it.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PORT ?? '0' },
    clients: { type: 'string', default: process.env.OIDC_CLIENTS ?? '[]' },
    pkce: { type: 'string', default: process.env.OIDC_PKCE ?? 'required' },
  },
});

const port = Number.parseInt(opts.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`bad port: ${opts.port}`);
}
if (!['required', 'optional'].includes(opts.pkce)) {
  throw new Error(`--pkce must be "required" or "optional", not ${opts.pkce}`);
}
const clients = JSON.parse(opts.clients).map((c) => ({
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: c.client_secret ? 'client_secret_basic' : 'none',
  ...c,
}));
if (clients.length === 0) throw new Error('no clients: pass --clients JSON or OIDC_CLIENTS');

// Deterministic accounts: any login exists, and its claims follow from it.
function account(login) {
  return {
    accountId: login,
    async claims() {
      return {
        sub: login,
        name: `Test ${login}`,
        preferred_username: login,
        email: `${login}@example.test`,
        email_verified: true,
      };
    },
  };
}

// A fresh signing key and cookie keys per run: nothing secret is stored anywhere.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test', alg: 'RS256', use: 'sig' };

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('hex')],
      // Cookies ignore ports: per-port names keep two providers on 127.0.0.1 apart.
      names: {
        session: `_op${actualPort}_session`,
        interaction: `_op${actualPort}_interaction`,
        resume: `_op${actualPort}_interaction_resume`,
      },
    },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'profile', 'email'],
    findAccount: async (_ctx, id) => account(id),
    features: { devInteractions: { enabled: true } },
    pkce: { required: () => opts.pkce === 'required' },
    ttl: {
      AccessToken: 300,
      AuthorizationCode: 60,
      IdToken: 300,
      Interaction: 600,
      Grant: 600,
      Session: 600,
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
