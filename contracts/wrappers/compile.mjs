// Shared by scripts/compile.mjs and the hash test: compile every contracts/*.tolk.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTolkCompiler, getTolkCompilerVersion } from '@ton/tolk-js';
import { Cell } from '@ton/core';

export const CONTRACTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'contracts');

export async function compileOne(name) {
    const r = await runTolkCompiler({
        entrypointFileName: `${name}.tolk`,
        fsReadCallback: (p) => fs.readFileSync(path.join(CONTRACTS_DIR, p), 'utf-8'),
    });
    if (r.status !== 'ok') throw new Error(`${name}.tolk: ${r.message}`);
    return {
        contract: name,
        tolkVersion: await getTolkCompilerVersion(),
        codeBoc64: r.codeBoc64,
        codeHashHex: Cell.fromBase64(r.codeBoc64).hash().toString('hex'),
    };
}

export async function compileAll() {
    const out = {};
    for (const f of fs.readdirSync(CONTRACTS_DIR).filter((f) => f.endsWith('.tolk')).sort()) {
        const name = f.replace(/\.tolk$/, '');
        out[name] = await compileOne(name);
    }
    return out;
}
