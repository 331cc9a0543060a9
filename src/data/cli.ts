/**
 * `infogeo-data`: downloads a data set into the cache folder (see `infogeo/data`).
 *
 *   npx infogeo-data mnist|fashion-mnist|cifar10 [--dir D]
 *
 * @internal
 */
import { DATASETS, DATASET_NAMES, type DatasetName } from './catalog.js';
import { downloadDataset, type DownloadProgress } from './download.js';
import { dataRoot } from './store.js';

const USAGE = `usage: infogeo-data ${DATASET_NAMES.join('|')} [--dir D]

Downloads a data set from its publisher, checks the published MD5 of every file, and keeps it in
D (default: ${dataRoot()}/NAME; set INFOGEO_DATA to move the cache folder, INFOGEO_DATA_MIRROR to
fetch from a mirror with the same files). An interrupted download resumes when run again.`;

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const names = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--dir');
  const dirAt = argv.indexOf('--dir');
  const dir = dirAt >= 0 ? argv[dirAt + 1] : undefined;
  const unknown = argv.filter((a) => a.startsWith('--') && a !== '--dir');
  if (names.length !== 1 || !DATASET_NAMES.includes(names[0] as DatasetName) || unknown.length > 0 || (dirAt >= 0 && !dir)) {
    console.error(USAGE);
    return 2;
  }
  const name = names[0] as DatasetName;
  const tty = process.stderr.isTTY === true;
  let line = '';
  const show = (p: DownloadProgress) => {
    let text: string;
    if (p.phase === 'download') {
      const frac = p.total > 0 ? p.received / p.total : 0;
      const bar = '#'.repeat(Math.round(frac * 30)).padEnd(30, '.');
      text = `${p.file} [${bar}] ${(100 * frac).toFixed(0).padStart(3)} % ${mb(p.received)} / ${mb(p.total)} MB`;
    } else if (p.phase === 'verify') text = `${p.file}: checking its MD5`;
    else text = `${p.file}: unpacking (${mb(p.received)} MB)`;
    if (tty) process.stderr.write(`\r${text.padEnd(line.length)}`);
    else if (p.phase !== 'download' || p.received === p.total) process.stderr.write(text + '\n');
    line = text;
  };
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort(new Error('interrupted; run the same command again to resume')));
  try {
    const { dir: where, downloaded } = await downloadDataset(name, { dir, onProgress: show, signal: abort.signal });
    if (tty && line) process.stderr.write('\n');
    console.log(downloaded ? `${DATASETS[name].title} is in ${where}` : `${DATASETS[name].title} is already in ${where}`);
    return 0;
  } catch (e) {
    if (tty && line) process.stderr.write('\n');
    console.error(e instanceof Error ? e.message : String(e));
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
