/**
 * The packed package's size budget: the tarball, each picture it ships and all of them together.
 * A picture ships because a packed document shows it (package.json `files` names each one), so a
 * picture that no packed markdown file references is dead weight and fails too.
 *
 *   tsx .ci/pack-budget.ts TARBALL DIR   (DIR: the tarball extracted, i.e. its `package` folder)
 *
 * Exits 1 naming each excess. To shrink a figure: bash scripts/optimise-images.sh FILE.png.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const KiB = 1024;
/** What the package may weigh, packed (dist's four entry points and their maps, the docs, the figures). */
const TARBALL_MAX = 1000 * KiB;
/** One figure: the packed docs show 14, the largest 67 KiB after scripts/optimise-images.sh. */
const IMAGE_MAX = 80 * KiB;
/** All figures together (now 350 KiB). */
const IMAGES_MAX = 400 * KiB;
const IMAGE = /\.(png|jpe?g|gif|svg|webp|avif)$/i;

const [tarball, dir] = process.argv.slice(2);
if (!tarball || !dir) throw new Error('usage: tsx .ci/pack-budget.ts TARBALL PACKAGE_DIR');
const pkg = resolve(dir);
const files = readdirSync(pkg, { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile())
  .map((e) => join(e.parentPath, e.name));

const kib = (n: number) => `${(n / KiB).toFixed(1)} KiB`;
const problems: string[] = [];

const packed = statSync(tarball).size;
if (packed > TARBALL_MAX) problems.push(`the tarball is ${kib(packed)}, over its budget of ${kib(TARBALL_MAX)}`);

// The markdown's text, to see which pictures it shows (by file name under docs/images: the README
// says docs/images/x.png, a guide ../images/x.png).
const markdown = files.filter((f) => f.endsWith('.md')).map((f) => readFileSync(f, 'utf8')).join('\n');
let images = 0;
const rows: string[] = [];
for (const file of files.filter((f) => IMAGE.test(f)).sort()) {
  const rel = relative(pkg, file);
  const size = statSync(file).size;
  images += size;
  rows.push(`  ${kib(size).padStart(10)}  ${rel}`);
  if (size > IMAGE_MAX) problems.push(`${rel} is ${kib(size)}, over the per-picture budget of ${kib(IMAGE_MAX)} (bash scripts/optimise-images.sh ${rel})`);
  const tail = rel.replace(/^docs\//, '');
  if (!markdown.includes(tail)) problems.push(`${rel} ships but no packed markdown file shows it: take it out of package.json "files"`);
}
if (images > IMAGES_MAX) problems.push(`the pictures weigh ${kib(images)} together, over their budget of ${kib(IMAGES_MAX)}`);

console.log(`pack-budget: tarball ${kib(packed)} (budget ${kib(TARBALL_MAX)}); ${rows.length} pictures, ${kib(images)} (budget ${kib(IMAGES_MAX)}, ${kib(IMAGE_MAX)} each)`);
console.log(rows.join('\n'));
if (problems.length > 0) {
  console.error(`pack-budget: over budget:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
