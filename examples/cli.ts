/** The command line shared by the trained-model examples: --quick, --retrain, --data DIR; out/ and checkpoints/. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function exampleArgs(moduleUrl: string, checkpoint: string) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const here = dirname(fileURLToPath(moduleUrl));
  return {
    quick,
    retrain: args.includes('--retrain'),
    dataDir: args.includes('--data') ? args[args.indexOf('--data') + 1] : undefined,
    out: join(here, 'out'),
    checkpoint: join(here, 'checkpoints', quick ? `${checkpoint}_quick` : checkpoint),
  };
}
