// Interop of Carekey with kill-the-clipboard, an independent SMART Health Links / Cards
// implementation (TypeScript, npm `kill-the-clipboard`, pinned in package.json), driven by
// src-tauri/client/tests/shl_interop.rs. Everything listens on or talks to 127.0.0.1 only.
//
//   node interop.mjs serve BUNDLE.json      SHLs it creates, served over HTTP; prints one JSON
//                                           line, serves until stdin closes
//   node interop.mjs view SHLINK [PASSCODE] resolves and decrypts a link with its viewer code;
//                                           prints {"resources": [...]}
//   node interop.mjs issue BUNDLE.json [ISS] issues a SMART Health Card under a fresh ES256
//                                           key, issuer ISS (default a fixed example URL);
//                                           prints {"jws", "jwks", "iss"}
//
// SHL = HL7 SMART Health Cards and Links IG STU1, "SMART Health Links"; SHC = its "SMART
// Health Cards" specification.
import http from 'node:http';
import { randomBytes, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  SHL, SHLManifestBuilder, SHLViewer, SHCIssuer, deriveKidFromPublicKey,
} from 'kill-the-clipboard';

const [, , cmd, arg1, arg2] = process.argv;
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

async function serve(bundlePath) {
  const bundle = JSON.parse(readFileSync(bundlePath, 'utf8'));
  const files = new Map(); // storage path -> JWE
  const links = new Map(); // manifest pathname -> { builder, passcode, attempts, forceLocation }
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    try {
      if (req.method === 'GET' && url.pathname.startsWith('/files/')) {
        const jwe = files.get(url.pathname.slice('/files/'.length));
        if (!jwe) { res.writeHead(404).end(); return; }
        res.writeHead(200, { 'content-type': 'application/jose' }).end(jwe);
        return;
      }
      const link = links.get(url.pathname);
      if (req.method !== 'POST' || !link) { res.writeHead(404).end(); return; }
      let body = '';
      for await (const chunk of req) body += chunk;
      const mr = JSON.parse(body);
      if (link.passcode !== undefined) {
        // SHL "Manifest request": 401 with remainingAttempts on a missing or wrong passcode;
        // inactive (404) once the attempts are used up.
        if (link.attempts <= 0) { res.writeHead(404).end(); return; }
        if (mr.passcode !== link.passcode) {
          link.attempts -= 1;
          res.writeHead(401, { 'content-type': 'application/json' })
            .end(JSON.stringify({ remainingAttempts: link.attempts }));
          return;
        }
      }
      const manifest = await link.builder.buildManifest({
        embeddedLengthMax: link.forceLocation ? 0 : mr.embeddedLengthMax,
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(manifest));
    } catch (e) {
      res.writeHead(500).end(String(e && e.message));
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const base = `http://127.0.0.1:${server.address().port}`;
  const make = async ({ flag, passcode, forceLocation }) => {
    const shl = SHL.generate({ baseManifestURL: base, manifestPath: '/manifest.json', flag, label: 'kill-the-clipboard interop' });
    const builder = new SHLManifestBuilder({
      shl,
      uploadFile: async (content) => { const p = randomBytes(16).toString('hex'); files.set(p, content); return p; },
      getFileURL: async (p) => `${base}/files/${p}`,
      loadFile: async (p) => files.get(p),
    });
    await builder.addFHIRResource({ content: bundle, enableCompression: true });
    links.set(new URL(shl.url).pathname, { builder, passcode, attempts: 3, forceLocation });
    return shl.toURI();
  };
  const passcode = '1234-interop';
  say({
    passcodeLink: await make({ flag: 'P', passcode, forceLocation: false }),
    passcode,
    openLink: await make({ flag: undefined, passcode: undefined, forceLocation: true }),
  });
  process.stdin.resume();
  process.stdin.on('end', () => server.close(() => process.exit(0)));
}

async function view(shlink, passcode) {
  const viewer = new SHLViewer({ shlinkURI: shlink });
  const r = await viewer.resolveSHL({ recipient: 'kill-the-clipboard viewer', passcode, embeddedLengthMax: 100 });
  say({ resources: r.fhirResources, cards: r.smartHealthCards.length });
}

async function issue(bundlePath, issuerURL) {
  const bundle = JSON.parse(readFileSync(bundlePath, 'utf8'));
  const { privateKey, publicKey } = await webcrypto.subtle.generateKey(
    { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const pub = await webcrypto.subtle.exportKey('jwk', publicKey);
  const priv = await webcrypto.subtle.exportKey('jwk', privateKey);
  const iss = issuerURL || 'https://issuer.interop.example';
  const issuer = new SHCIssuer({ issuer: iss, privateKey: priv, publicKey: pub, expirationTime: null, enableQROptimization: false, strictReferences: false });
  const shc = await issuer.issue(bundle);
  const kid = await deriveKidFromPublicKey(pub);
  const jwk = { kty: 'EC', crv: 'P-256', x: pub.x, y: pub.y, kid, use: 'sig', alg: 'ES256' };
  say({ jws: shc.asJWS(), jwks: { keys: [jwk] }, iss });
}

const run = { serve: () => serve(arg1), view: () => view(arg1, arg2), issue: () => issue(arg1, arg2) }[cmd];
if (!run) { process.stderr.write('usage: node interop.mjs serve|view|issue ...\n'); process.exit(2); }
run().catch((e) => { process.stderr.write(`interop failed: ${e && e.name}: ${e && e.message}\n`); process.exit(1); });
