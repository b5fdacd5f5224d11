// Prints the gzip size of the initial JS + CSS the app loads (RESULT doctor_ui_gzip_kb).
import { readFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
const html = readFileSync(new URL('./dist/index.html', import.meta.url), 'utf8');
const refs = [...html.matchAll(/(?:src|href)="\.?\/?(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
let total = 0;
for (const r of refs) total += gzipSync(readFileSync(new URL(`./dist/${r}`, import.meta.url))).length;
if (refs.length === 0) throw new Error(`no assets referenced (${readdirSync(new URL('./dist', import.meta.url))})`);
console.log(`RESULT doctor_ui_gzip_kb ${(total / 1024).toFixed(1)}`);
