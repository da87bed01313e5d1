// The committed build/*.json must be exactly what the current sources compile to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Cell } from '@ton/core';
import { compileAll } from '../wrappers/compile.mjs';

test('committed build/*.json matches a fresh compilation', async () => {
    const fresh = await compileAll();
    assert.deepEqual(Object.keys(fresh).sort(), ['channel', 'root', 'stake']);
    for (const [name, out] of Object.entries(fresh) as [string, any][]) {
        const committed = JSON.parse(fs.readFileSync(new URL(`../build/${name}.json`, import.meta.url), 'utf-8'));
        assert.equal(committed.codeHashHex, out.codeHashHex, `${name}: hash drift, run npm run build`);
        assert.equal(committed.codeBoc64, out.codeBoc64, `${name}: code drift, run npm run build`);
        assert.equal(Cell.fromBase64(committed.codeBoc64).hash().toString('hex'), committed.codeHashHex);
    }
});
