// Compiles contracts/*.tolk into build/NAME.json {codeBoc64, codeHashHex}.
// `node scripts/compile.mjs` writes; `node scripts/compile.mjs --check` only compares.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileAll } from '../wrappers/compile.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
let bad = 0;
for (const [name, out] of Object.entries(await compileAll())) {
    const file = path.join(root, 'build', `${name}.json`);
    const text = JSON.stringify(out, null, 1) + '\n';
    if (check) {
        const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf-8') : '';
        if (old !== text) { console.error(`${name}: build/${name}.json is stale`); bad++; }
        else console.log(name, out.codeHashHex, 'ok');
    } else {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, text);
        console.log(name, out.codeHashHex);
    }
}
process.exit(bad ? 1 : 0);
