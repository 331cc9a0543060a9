/** A one-line terminal progress bar (plain lines when the output is not a terminal). */
export function progressBar(label: string, total: number) {
  const tty = process.stderr.isTTY === true;
  const start = Date.now();
  let lastPrint = 0;
  return {
    update(done: number, info = '') {
      const now = Date.now();
      if (!tty && done < total && now - lastPrint < 5000) return;
      lastPrint = now;
      const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
      const width = 28;
      const filled = Math.round(frac * width);
      const secs = ((now - start) / 1000).toFixed(0);
      const line = `${label} [${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${done}/${total} ${secs}s ${info}`;
      if (tty) process.stderr.write(`\r${line}\x1b[K${done >= total ? '\n' : ''}`);
      else process.stderr.write(`${line}\n`);
    },
  };
}
