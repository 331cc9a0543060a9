/**
 * Every relative link of the packed package's markdown resolves inside the package: markdown links
 * and images (inline and reference-style) and HTML `src`/`href` attributes, in every .md file the
 * tarball ships (README, CHANGELOG, guides, reference). No exemptions: a link to a file that only the
 * repository has (an example, a benchmark table) is broken for whoever reads the installed package,
 * so the docs name such files in plain text instead. A `#fragment` into a markdown file must name
 * one of its headings (GitHub's slugs) or an explicit anchor.
 *
 *   tsx .ci/packed-links.ts DIR   (DIR: the extracted tarball, i.e. its `package` folder)
 *
 * Exits 1 listing each broken link as FILE:LINE: TARGET (why).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const dir = process.argv[2];
if (!dir) throw new Error('usage: tsx .ci/packed-links.ts PACKAGE_DIR');
const pkg = resolve(dir);

const markdownFiles = readdirSync(pkg, { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile() && e.name.endsWith('.md'))
  .map((e) => join(e.parentPath, e.name))
  .sort();

interface Link { line: number; target: string }

/** Blanks code (fenced blocks, indented blocks after a blank line, inline spans) keeping line numbers. */
function withoutCode(text: string): string {
  const lines = text.split('\n');
  let fence: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const f = /^\s{0,3}(`{3,}|~{3,})/.exec(l);
    if (fence) {
      if (f && f[1]!.startsWith(fence)) fence = undefined;
      lines[i] = '';
    } else if (f) {
      fence = f[1];
      lines[i] = '';
    }
  }
  return lines.join('\n').replace(/(`+)[\s\S]*?\1/g, (m) => m.replace(/[^\n]/g, ' '));
}

function links(text: string): Link[] {
  const clean = withoutCode(text);
  const out: Link[] = [];
  const lineOf = (index: number) => clean.slice(0, index).split('\n').length;
  // [text](target "title") and ![alt](target): the target may be wrapped in <>.
  for (const m of clean.matchAll(/!?\[(?:[^\]\\]|\\.)*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) {
    out.push({ line: lineOf(m.index), target: m[1]!.replace(/^<|>$/g, '') });
  }
  // [id]: target (reference definitions)
  for (const m of clean.matchAll(/^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/gm)) {
    out.push({ line: lineOf(m.index), target: m[1]!.replace(/^<|>$/g, '') });
  }
  // <img src="…">, <a href="…">, <source srcset="…">
  for (const m of clean.matchAll(/<(?:img|a|source)\b[^>]*?\s(?:src|href|srcset)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)/gi)) {
    out.push({ line: lineOf(m.index), target: m[1]!.replace(/^["']|["']$/g, '') });
  }
  return out;
}

/** GitHub's heading slugs (and typedoc's, which follow them), with -1, -2 … for repeats, and explicit anchors. */
function anchors(file: string): Set<string> {
  const text = withoutCode(readFileSync(file, 'utf8'));
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of text.matchAll(/^#{1,6}\s+(.*?)\s*#*\s*$/gm)) {
    const base = m[1]!
      .replace(/<[^>]+>/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of text.matchAll(/<a\s[^>]*?(?:id|name)\s*=\s*["']([^"']+)["']/gi)) out.add(m[1]!);
  return out;
}

const anchorCache = new Map<string, Set<string>>();
const broken: string[] = [];
let checked = 0;
for (const file of markdownFiles) {
  for (const { line, target } of links(readFileSync(file, 'utf8'))) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue; // absolute URLs, mailto:
    checked++;
    const where = `${relative(pkg, file)}:${line}: ${target}`;
    const [pathPart, fragment] = target.split('#', 2) as [string, string | undefined];
    let path = pathPart;
    try {
      path = decodeURIComponent(pathPart);
    } catch {
      broken.push(`${where} (not a valid URL path)`);
      continue;
    }
    if (path.startsWith('/')) {
      broken.push(`${where} (absolute path: resolves against the reader's site, not the package)`);
      continue;
    }
    const abs = path === '' ? file : join(dirname(file), path);
    if (!(abs + sep).startsWith(pkg + sep) && abs !== pkg) {
      broken.push(`${where} (outside the package)`);
      continue;
    }
    if (!existsSync(abs)) {
      broken.push(`${where} (the package has no ${relative(pkg, abs)})`);
      continue;
    }
    if (fragment && statSync(abs).isFile() && abs.endsWith('.md')) {
      let known = anchorCache.get(abs);
      if (!known) anchorCache.set(abs, (known = anchors(abs)));
      if (!known.has(decodeURIComponent(fragment))) broken.push(`${where} (${relative(pkg, abs)} has no heading #${fragment})`);
    }
  }
}

if (broken.length > 0) {
  broken.sort((x, y) => x.localeCompare(y, 'en', { numeric: true }));
  console.error(`packed-links: ${broken.length} of ${checked} relative links and images in the packed markdown are broken:\n  ${broken.join('\n  ')}`);
  process.exit(1);
}
console.log(`packed-links: all ${checked} relative links and images of ${markdownFiles.length} packed markdown files resolve inside the package`);
