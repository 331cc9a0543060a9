#!/usr/bin/env bash
# Installs the packed tarball with its peers into an empty project and uses it from ESM and CJS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tarball="$(cd "$root" && npm pack --silent --pack-destination "$tmp" | tail -n 1)"
echo "packed: $tarball ($(du -k "$tmp/$tarball" | cut -f1) KiB)"
tar -tzf "$tmp/$tarball" | sed 's/^/  /'
# What a reader of the installed package sees: every relative link and picture of its markdown
# resolves inside it, and it stays within its size budget.
mkdir "$tmp/unpacked"
tar -xzf "$tmp/$tarball" -C "$tmp/unpacked"
"$root/node_modules/.bin/tsx" "$root/.ci/pack-budget.ts" "$tmp/$tarball" "$tmp/unpacked/package"
"$root/node_modules/.bin/tsx" "$root/.ci/packed-links.ts" "$tmp/unpacked/package"
cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund "./$tarball" @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-layers@4.22.0 \
  @tensorflow/tfjs-backend-cpu@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0 >/dev/null

cat > smoke.mjs <<'JS'
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { InfogeoError, inputJacobian, registerGradientKernels, ShapeError, ValueError } from 'infogeo';
import { useWasmBackend } from 'infogeo/wasm';
import { createJacobianPool } from 'infogeo/node';
tf.env().set('PROD', true);
await useWasmBackend();
registerGradientKernels();
const input = tfl.input({ shape: [8, 8, 1] });
const c = tfl.layers.conv2d({ filters: 4, kernelSize: 3, useBias: false }).apply(input);
const h = tfl.layers.batchNormalization().apply(c);
const out = tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(tfl.layers.flatten().apply(h));
const model = tfl.model({ inputs: input, outputs: out });
const J = await inputJacobian(model, tf.randomNormal([2, 8, 8, 1]));
if (J.shape.join() !== '2,3,8,8,1') throw new Error(`bad shape ${J.shape}`);
let threw = false;
try { await inputJacobian(model, tf.zeros([2, 5])); } catch (e) { threw = e instanceof ShapeError; }
if (!threw) throw new Error('expected a ShapeError');
// Each entry point is its own bundle with its own copy of the error classes: an error thrown by
// infogeo/node is still instanceof the classes exported by infogeo.
const err = await createJacobianPool(model, { threads: 0 }).then(() => undefined, (e) => e);
if (err?.name !== 'ValueError') throw new Error(`expected a ValueError from infogeo/node, got ${err}`);
if (!(err instanceof ValueError)) throw new Error("infogeo/node's ValueError is not instanceof infogeo's ValueError (ESM)");
if (!(err instanceof InfogeoError)) throw new Error("infogeo/node's ValueError is not instanceof infogeo's InfogeoError (ESM)");
if (err instanceof ShapeError) throw new Error("infogeo/node's ValueError is instanceof infogeo's ShapeError (ESM)");
console.log(`ESM ok: backend ${tf.getBackend()}, Jacobian ${J.shape}, infogeo/node's errors instanceof infogeo's`);
JS

cat > pool.mjs <<'JS'
// The worker threads of infogeo/node load the packaged worker script next to the module.
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { InfogeoError, inputJacobian, ValueError } from 'infogeo';
import { useWasmBackend } from 'infogeo/wasm';
import { createJacobianPool } from 'infogeo/node';
tf.env().set('PROD', true);
await useWasmBackend();
const model = tfl.sequential({ layers: [tfl.layers.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, activation: 'relu' }), tfl.layers.flatten(), tfl.layers.dense({ units: 3 })] });
const pool = await createJacobianPool(model, { threads: 2 });
const x = tf.randomNormal([3, 6, 6, 1]);
const J = await pool.inputJacobian(x);
const ref = await inputJacobian(model, x);
const err = tf.max(tf.abs(tf.sub(J, ref))).dataSync()[0];
await pool.close();
if (!(err < 1e-5)) throw new Error(`pool and in-thread Jacobians differ by ${err}`);
const closed = await pool.inputJacobian(x).then(() => undefined, (e) => e);
if (!(closed instanceof ValueError && closed instanceof InfogeoError && /the pool is closed/.test(closed.message)))
  throw new Error(`expected infogeo's ValueError "the pool is closed", got ${closed}`);
console.log(`pool ok: ${pool.threads} threads, Jacobian ${J.shape}, max difference ${err}`);
JS

cat > smoke.cjs <<'JS'
const tf = require('@tensorflow/tfjs-core');
const tfl = require('@tensorflow/tfjs-layers');
require('@tensorflow/tfjs-backend-cpu');
const { InfogeoError, inputJacobian, ShapeError, ValueError, weightJacobian } = require('infogeo');
const { createJacobianPool } = require('infogeo/node');
tf.env().set('PROD', true);
(async () => {
  await tf.setBackend('cpu');
  const model = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [4], units: 3 })] });
  const x = tf.randomNormal([2, 4]);
  const J = await inputJacobian(model, x);
  const W = await weightJacobian(model, x);
  if (J.shape.join() !== '2,3,4' || W.jacobian.shape.join() !== '2,3,15') throw new Error('bad shapes');
  // infogeo/node's bundle has its own copy of the error classes: its errors are still instanceof infogeo's.
  const err = await createJacobianPool(model, { threads: 0 }).then(() => undefined, (e) => e);
  if (!err || err.name !== 'ValueError') throw new Error(`expected a ValueError from infogeo/node, got ${err}`);
  if (!(err instanceof ValueError)) throw new Error("infogeo/node's ValueError is not instanceof infogeo's ValueError (CJS)");
  if (!(err instanceof InfogeoError)) throw new Error("infogeo/node's ValueError is not instanceof infogeo's InfogeoError (CJS)");
  if (err instanceof ShapeError) throw new Error("infogeo/node's ValueError is instanceof infogeo's ShapeError (CJS)");
  console.log(`CJS ok: backend ${tf.getBackend()}, Jacobian ${J.shape}, weight Jacobian ${W.jacobian.shape}, infogeo/node's errors instanceof infogeo's`);
})().catch((e) => { console.error(e); process.exit(1); });
JS

node smoke.mjs
node pool.mjs
node smoke.cjs

# A TypeScript user's file, compiled with exactly the tsconfig.json of the README's install section
# (strict, skipLibCheck) against this install, then run. Without skipLibCheck, tsc fails inside
# @tensorflow/tfjs-layers' own typings only, as the README says.
node -e '
const fs = require("fs");
const m = /```json\n(\{[^`]*"skipLibCheck": true[^`]*\})\n```/.exec(fs.readFileSync(process.argv[1], "utf8"));
if (!m) { console.error("smoke: the README has no ```json tsconfig block with skipLibCheck"); process.exit(1); }
fs.writeFileSync("tsconfig.json", m[1] + "\n");
' "$root/README.md"
cat > user.mts <<'TS'
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { inputJacobian, InfogeoError, localDataMatrix, ShapeError, type LowRankPSD } from 'infogeo';
import { useWasmBackend } from 'infogeo/wasm';

tf.env().set('PROD', true);
await useWasmBackend();
const model: tfl.LayersModel = tfl.sequential({
  layers: [tfl.layers.dense({ inputShape: [4], units: 3, activation: 'softmax' })],
});
const x = tf.randomNormal([2, 4]);
const J = await inputJacobian(model, x);
const { G, probs }: { G: LowRankPSD; probs: tf.Tensor } = await localDataMatrix(model, x);
const rank = await G.rank();
let refused: InfogeoError | undefined;
try {
  await inputJacobian(model, tf.zeros([2, 5]));
} catch (e) {
  if (e instanceof ShapeError) refused = e;
}
if (J.shape.join() !== '2,3,4' || rank.length !== 2 || refused === undefined) throw new Error('unexpected results');
console.log(`TypeScript ok: Jacobian ${J.shape}, rank of G ${rank.join(', ')}, ${refused.name}`);
tf.dispose([x, J, probs]);
G.dispose();
model.dispose();
TS
tsc="$root/node_modules/typescript/bin/tsc"
node "$tsc" -p .
node user.mjs
if node "$tsc" -p . --noEmit --skipLibCheck false > strict.log; then
  echo "smoke: tsc passes without skipLibCheck now: the README's TypeScript note is out of date"; exit 1
fi
if grep 'error TS' strict.log | grep -v '^node_modules/@tensorflow/tfjs-layers/'; then
  echo "smoke: errors outside tfjs-layers' typings without skipLibCheck (above)"; exit 1
fi
echo "TypeScript without skipLibCheck: $(grep -c 'error TS' strict.log) errors, all inside @tensorflow/tfjs-layers' typings"

# The README's and the guides' code, run against this install (and the @examples type-checked).
"$root/node_modules/.bin/tsx" "$root/.ci/docs-code.ts" "$root" "$tmp"
